package web_test

// Browser tests: the panel as a person sees it, in Debian's headless
// chromium driven over the DevTools protocol. Each test is one story and
// asserts what is on the screen (the DOM), never the page script's
// internals. Waits are bounded polls of the DOM, never fixed sleeps.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
	"github.com/ikabud/panel/internal/web"
	"github.com/ikabud/panel/internal/web/browsertest"
)

// Bounds of the browser tests.
const (
	// browserRunTimeout bounds the browser shared by all the stories.
	browserRunTimeout = 3 * time.Minute
	// storyTimeout bounds one story.
	storyTimeout = 45 * time.Second
	// liveWithin is how soon a change must reach an open page: the
	// server batches log lines for 50 ms and the page draws once a frame,
	// so it takes well under a second; the rest is room for a busy CI
	// machine (two cores running other packages' tests).
	liveWithin = 3 * time.Second
	// pageWithin bounds a navigation or a form post.
	pageWithin = 10 * time.Second
	// evalWithin bounds one script evaluation: a page that cannot answer
	// within it is frozen.
	evalWithin = 2 * time.Second
)

// chrome is one headless chromium, shared by the stories of a test (it
// takes seconds to start); each person of a story gets a tab in a browser
// context of their own: their own cookies and storage.
type chrome struct {
	first context.Context // the browser's first tab, used by no one
}

func startChrome(t *testing.T, extra ...chromedp.ExecAllocatorOption) *chrome {
	t.Helper()
	dir := t.TempDir() // removed after the browser ended (cleanups run last-in first-out)
	ctx, cancel := context.WithTimeout(context.Background(), browserRunTimeout)
	tab, stop, err := browsertest.Start(ctx, dir, extra...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		cancel()
	})
	return &chrome{first: tab}
}

// person opens a tab for name, on the panel at base, in a fresh browser
// context that ends with t.
func (c *chrome) person(t *testing.T, base, name string) *browserTab {
	t.Helper()
	bounded, cancelStory := context.WithTimeout(c.first, storyTimeout)
	ctx, cancel, err := browsertest.NewProfile(bounded)
	if err != nil {
		cancelStory()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cancelStory()
	})
	tb := &browserTab{t: t, ctx: ctx, base: base, name: name}
	tb.watchConsole()
	return tb
}

// browserTab is one person's browser tab.
type browserTab struct {
	t    *testing.T
	ctx  context.Context
	base string
	name string

	mu       sync.Mutex
	problems []string // uncaught exceptions and CSP refusals seen in the tab
}

// watchConsole records what a person would only see in the developer
// tools: uncaught script errors and Content-Security-Policy refusals. The
// test fails on them at its end.
func (b *browserTab) watchConsole() {
	msgs := chromedp.Console(b.ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m.Text))
				b.mu.Unlock()
			}
		}
	}()
	b.t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			b.t.Errorf("%s's tab: %s", b.name, p)
		}
	})
}

// do runs steps in the tab, each bounded by pageWithin.
func (b *browserTab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageWithin)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// open navigates to path and waits until the page script has run.
func (b *browserTab) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
	b.waitFor("the page at "+path, `document.readyState === "complete"`)
}

// tryEvalPage evaluates expr in b's page within evalWithin.
func tryEvalPage[T any](b *browserTab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, evalWithin)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// evalPage evaluates expr and fails the test if the page cannot answer.
func evalPage[T any](b *browserTab, expr string) T {
	b.t.Helper()
	v, err := tryEvalPage[T](b, expr)
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// waitFor polls the page until the script expression cond is true, for at
// most pageWithin.
func (b *browserTab) waitFor(what, cond string) { b.t.Helper(); b.waitWithin(pageWithin, what, cond) }

// waitWithin polls cond every 20 ms for at most d. A failed evaluation (the
// page is navigating) is retried; at the deadline the test fails with what
// the person sees: the location, the live state and the page's text.
func (b *browserTab) waitWithin(d time.Duration, what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	var lastErr error
	for {
		ok, err := tryEvalPage[bool](b, cond)
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen, _ := tryEvalPage[string](b, `location.pathname + " [live: " + document.body.getAttribute("data-live-state") + "] " + document.body.innerText.slice(0, 600)`)
	b.t.Fatalf("%s: waited %v for %s (%s); last error %v; the page shows: %q", b.name, d, what, cond, lastErr, seen)
}

// login signs in through the form as a person does.
func (b *browserTab) login(name string) {
	b.t.Helper()
	b.open("/login")
	b.do("sign in as "+name,
		chromedp.SendKeys(chromedp.ID("username"), name),
		chromedp.SendKeys(chromedp.ID("password"), testPassword+"\r"))
	b.waitFor("the dashboard after signing in", `location.pathname === "/" && !!document.querySelector("[data-testid=instances]")`)
}

// waitLive waits until the page's socket is open.
func (b *browserTab) waitLive() {
	b.t.Helper()
	b.waitFor("the live connection", `document.body.getAttribute("data-live-state") === "open"`)
}

// markPage sets a mark on the window: it is gone after any reload, so
// noReload proves a change arrived live.
func (b *browserTab) markPage() {
	b.t.Helper()
	evalPage[chromedp.Void](b, `window.__notReloaded = true`)
}

func (b *browserTab) noReload() {
	b.t.Helper()
	if !evalPage[bool](b, `window.__notReloaded === true`) {
		b.t.Errorf("%s: the page was reloaded", b.name)
	}
}

// jsQuote quotes s as a script string literal.
func jsQuote(s string) string { return strconv.Quote(s) }

// rowCell is a script expression: the text of field f in id's row of the
// dashboard; pageCell the same on an instance's page.
func rowCell(id, f string) string {
	return `((document.querySelector('tr[data-id=` + jsQuote(id) + `] [data-f=` + jsQuote(f) + `]') || {}).textContent || "")`
}

func pageCell(f string) string {
	return `((document.querySelector('section[data-live=instance] [data-f=` + jsQuote(f) + `]') || {}).textContent || "")`
}

// logTexts is the text of each line the log panel shows, without its time.
const logTexts = `Array.from(document.querySelectorAll("pre[data-testid=log] .ln")).map(function (l) {
	var c = l.cloneNode(true), at = c.querySelector(".at"); if (at) at.remove(); return c.textContent; })`

// TestBrowser runs the stories in one headless chromium, each against a
// panel of its own.
func TestBrowser(t *testing.T) {
	c := startChrome(t)
	for _, story := range []struct {
		name string
		run  func(*testing.T, *chrome)
	}{
		{"LoginWithKeyboard", browserLoginWithKeyboard},
		{"CreateInstance", browserCreateInstance},
		{"CustomerStopSeenBySupport", browserCustomerStopSeenBySupport},
		{"LiveLog", browserLiveLog},
		{"CrashNewPID", browserCrashNewPID},
		{"ReconnectResumesLog", browserReconnectResumesLog},
		{"LogFlood", browserLogFlood},
		{"PanelRestart", browserPanelRestart},
		{"RemovedWhileOpen", browserRemovedWhileOpen},
		{"AccessLogRefresh", browserAccessLogRefresh},
	} {
		t.Run(story.name, func(t *testing.T) { story.run(t, c) })
	}
}

// browserLoginWithKeyboard: a person signs in with the keyboard only.
func browserLoginWithKeyboard(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	e.mkInstance("site-one", nil)
	ann := c.person(t, e.base, "ann")
	ann.open("/")
	ann.waitFor("the sign-in page", `location.pathname === "/login"`)
	if got := evalPage[string](ann, `document.activeElement ? document.activeElement.id : ""`); got != "username" {
		t.Errorf("the sign-in page focuses %q, not the user name", got)
	}
	ann.do("type the user name, Tab, the password, Enter", chromedp.KeyEvent("ann\t"+testPassword+"\r"))
	ann.waitFor("the dashboard", `location.pathname === "/" && !!document.querySelector("tr[data-id=site-one]")`)
	ann.waitLive()
	if who := evalPage[string](ann, `document.querySelector("a[href='/account']").textContent`); !strings.Contains(who, "ann") {
		t.Errorf("the top bar says %q, not who is signed in", who)
	}
}

// browserCreateInstance: refused values are shown beside their fields
// and kept; a good form lands on the new instance's page, which follows
// provisioning live until the instance runs.
func browserCreateInstance(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	ann := c.person(t, e.base, "ann")
	ann.login("ann")
	ann.open("/instances/new")
	fill := func(id, mem string) {
		ann.do("fill the form",
			chromedp.Clear(chromedp.ID("f-id")), chromedp.SendKeys(chromedp.ID("f-id"), id),
			chromedp.Clear(chromedp.ID("f-memory_max")), chromedp.SendKeys(chromedp.ID("f-memory_max"), mem),
			chromedp.Click(chromedp.CSS(`form[data-testid=instance-form] button[type=submit]`)))
	}
	fill("bad/id", "-1")
	ann.waitFor("the refused form", `!!document.querySelector("[data-testid=error-id]")`)
	for _, f := range []string{"id", "memory_max"} {
		// The message sits inside the field's own label, next to its input.
		msg := evalPage[string](ann, `(function () { var m = document.querySelector("[data-testid=error-`+f+`]");
			return m && m.closest("label").querySelector("#f-`+f+`") ? m.textContent : ""; })()`)
		if strings.TrimSpace(msg) == "" {
			t.Errorf("no message beside field %s", f)
		}
		if inv := evalPage[string](ann, `document.getElementById("f-`+f+`").getAttribute("aria-invalid") || ""`); inv != "true" {
			t.Errorf("field %s is not marked invalid", f)
		}
	}
	if id, mem := evalPage[string](ann, `document.getElementById("f-id").value`), evalPage[string](ann, `document.getElementById("f-memory_max").value`); id != "bad/id" || mem != "-1" {
		t.Errorf("values not kept: id %q, memory_max %q", id, mem)
	}
	if got := e.svc.List(context.Background(), rootPrincipal()); len(got) != 0 {
		t.Fatalf("a refused form made instances: %v", got)
	}

	// Provisioning is held, so the page shows it before the instance runs.
	entered, release := e.fb.Hold(fakebackend.OpProvision)
	defer release()
	fill("new-site", "256M")
	ann.waitFor("the new instance's page", `location.pathname === "/instances/new-site" && !!document.querySelector("section[data-live=instance]")`)
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("provisioning never started")
	}
	ann.waitLive()
	ann.markPage()
	if st := evalPage[string](ann, pageCell("state")); st != "provisioning" {
		t.Errorf("while provisioning the page shows %q", st)
	}
	release()
	ann.waitWithin(liveWithin, "running with a PID", pageCell("state")+` === "running" && /^[0-9]+$/.test(`+pageCell("pid")+`)`)
	ann.noReload()
	v, err := e.svc.Get(context.Background(), rootPrincipal(), "new-site")
	if err != nil {
		t.Fatal(err)
	}
	if pid := evalPage[string](ann, pageCell("pid")); pid != strconv.Itoa(v.Status.MainPID) {
		t.Errorf("the page shows PID %s, the instance runs as %d", pid, v.Status.MainPID)
	}
	if mem := v.Spec.MemoryMax; mem != "256M" {
		t.Errorf("memory_max %q, want 256M", mem)
	}
}

// browserCustomerStopSeenBySupport: alice sees only her own instances;
// her Stop shows on support's dashboard, open at the same time, without a
// reload.
func browserCustomerStopSeenBySupport(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	e.mkInstance("alice-site", &e.alice)
	e.mkInstance("bob-site", &e.bob)
	e.mkInstance("house-site", nil)
	alice, sam := c.person(t, e.base, "alice"), c.person(t, e.base, "sam")
	alice.login("alice")
	alice.waitLive()
	rows := `Array.from(document.querySelectorAll("table[data-testid=instances] tr[data-id]")).map(function (r) { return r.getAttribute("data-id"); })`
	if got := evalPage[[]string](alice, rows); !slices.Equal(got, []string{"alice-site"}) {
		t.Errorf("alice's dashboard lists %v", got)
	}
	sam.login("sam")
	sam.waitLive()
	if got := evalPage[[]string](sam, rows); !slices.Equal(got, []string{"alice-site", "bob-site", "house-site"}) {
		t.Errorf("support's dashboard lists %v", got)
	}
	sam.markPage()

	alice.open("/instances/alice-site")
	alice.waitLive()
	alice.do("click Stop", chromedp.Click(chromedp.CSS(`button[data-act=stop]`)))
	alice.waitWithin(liveWithin, "her page to show stopped", pageCell("state")+` === "stopped"`)
	alice.waitWithin(liveWithin, "Start to be offered", `!document.querySelector("button[data-act=start]").disabled && document.querySelector("button[data-act=stop]").disabled`)
	sam.waitWithin(liveWithin, "alice-site stopped on support's dashboard", rowCell("alice-site", "state")+` === "stopped"`)
	if pid := evalPage[string](sam, rowCell("alice-site", "pid")); pid != "-" {
		t.Errorf("a stopped instance shows PID %q", pid)
	}
	if st := evalPage[string](sam, rowCell("bob-site", "state")); st != "running" {
		t.Errorf("bob-site shows %q", st)
	}
	sam.noReload()
	if !e.auditHas("alice-site", "alice", "stop", "ok") {
		t.Errorf("alice's stop is not audited")
	}
}

// browserLiveLog: a line the instance writes shows in the log panel at
// once, as inert text whatever it holds; support may watch but not act.
func browserLiveLog(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	e.mkInstance("site", &e.alice)
	sam := c.person(t, e.base, "sam")
	sam.login("sam")
	sam.open("/instances/site")
	sam.waitLive()
	if err := e.fb.AddLog("site", "GET /index.php 200"); err != nil {
		t.Fatal(err)
	}
	sam.waitWithin(liveWithin, "the line in the log panel", logTexts+`.indexOf("GET /index.php 200") >= 0`)

	const hostile = "<img src=x onerror=alert(1)>\x1b[31mred"
	if err := e.fb.AddLog("site", hostile); err != nil {
		t.Fatal(err)
	}
	sam.waitWithin(liveWithin, "the hostile line", logTexts+`.some(function (t) { return t.indexOf("red") >= 0; })`)
	lines := evalPage[[]string](sam, logTexts)
	if want := `<img src=x onerror=alert(1)>\x1b[31mred`; lines[len(lines)-1] != want {
		t.Errorf("the line shows as %q, want %q (markup as text, the escape visible)", lines[len(lines)-1], want)
	}
	if n := evalPage[int](sam, `document.querySelectorAll("img").length`); n != 0 {
		t.Errorf("the log line made %d img elements", n)
	}
	if ctl := evalPage[string](sam, `(document.querySelector("pre[data-testid=log] .ln:last-child .ctl") || {}).textContent || ""`); ctl != `\x1b` {
		t.Errorf("the escape is shown as %q, not as a visible code", ctl)
	}
	// Support sees the instance but has no power over it.
	if n := evalPage[int](sam, `document.querySelectorAll("button[data-act=stop]:not([disabled]), button[data-act=kill]:not([disabled])").length`); n != 0 {
		t.Errorf("support's page has %d enabled stop or kill buttons", n)
	}
}

// browserCrashNewPID: a master killed and restarted by its service
// manager shows its new PID and restart count on an open dashboard.
func browserCrashNewPID(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	before := e.mkInstance("site", nil)
	ann := c.person(t, e.base, "ann")
	ann.login("ann")
	ann.waitLive()
	ann.markPage()
	if pid := evalPage[string](ann, rowCell("site", "pid")); pid != strconv.Itoa(before.Status.MainPID) {
		t.Fatalf("the dashboard shows PID %q, want %d", pid, before.Status.MainPID)
	}
	st, err := e.fb.Crash("site")
	if err != nil {
		t.Fatal(err)
	}
	ann.waitWithin(liveWithin, "the new PID", rowCell("site", "pid")+` === `+jsQuote(strconv.Itoa(st.MainPID)))
	if got := evalPage[string](ann, rowCell("site", "state")); got != "running" {
		t.Errorf("after the restart the row shows %q", got)
	}
	if got := evalPage[string](ann, rowCell("site", "restarts")); got != "1" {
		t.Errorf("restarts shows %q, want 1", got)
	}
	ann.noReload()
}

// browserReconnectResumesLog: the connection drops; lines written
// meanwhile, and after, all show once each, in order, after the page
// reconnects by itself.
func browserReconnectResumesLog(t *testing.T, c *chrome) {
	p := newTrackedPanel(t, nil)
	e, network := p.e, p.ln
	e.mkInstance("site", nil)
	ann := c.person(t, e.base, "ann")
	ann.login("ann")
	ann.open("/instances/site")
	ann.waitLive()
	ann.markPage()
	lw := &lineWriter{t: t, e: e, id: "site"}
	add, shows := lw.add, lw.shows
	add(1, 5)
	ann.waitWithin(liveWithin, "the first lines", shows(5))

	// Record every live state the page goes through from here on.
	ann.recordLiveStates()
	if n := network.cut(); n == 0 {
		t.Fatal("no connection to cut")
	}
	ann.waitWithin(liveWithin, "the page to see the connection lost", `window.__states.indexOf("closed") >= 0`)
	add(6, 10)
	if st := evalPage[string](ann, `document.body.getAttribute("data-live-state")`); st == "open" {
		t.Fatalf("the page is connected while the network is down")
	}
	network.restore()
	ann.waitWithin(5*time.Second, "the page to reconnect by itself", `document.body.getAttribute("data-live-state") === "open"`)
	ann.waitWithin(liveWithin, "the lines written while disconnected", shows(10))
	add(11, 12)
	ann.waitWithin(liveWithin, "the lines written after", shows(12))
	if got := evalPage[[]string](ann, logTexts); !slices.Equal(got, lw.want) {
		t.Errorf("the log panel shows\n%q\nwant each line once, in order:\n%q", got, lw.want)
	}
	if marks := evalPage[[]string](ann, logMarks); len(marks) != 0 {
		t.Errorf("the resumed log shows markers %q", marks)
	}
	ann.noReload()
}

// browserLogFlood: 20,000 lines at once leave the page responsive and
// its log at most data-max-lines long, following the newest line.
func browserLogFlood(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	ann := c.person(t, e.base, "ann")
	ann.login("ann")
	ann.open("/instances/site")
	ann.waitLive()
	capLines := evalPage[int](ann, `parseInt(document.querySelector("pre[data-testid=log]").getAttribute("data-max-lines"), 10)`)
	if capLines <= 0 {
		t.Fatalf("the log panel has no data-max-lines")
	}
	const flood = 20000
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= flood; i++ {
			if err := e.fb.AddLog("site", fmt.Sprintf("flood %05d lorem ipsum dolor sit amet, consectetur adipiscing elit", i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	count := `document.querySelectorAll("pre[data-testid=log] .ln").length`
	var slowest time.Duration
	// The page must answer all along, while the lines pour in.
	for flooding := true; flooding; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			flooding = false
		default:
		}
		start := time.Now()
		n, err := tryEvalPage[int](ann, count)
		if err != nil {
			t.Fatalf("the page did not answer within %v during the flood: %v", evalWithin, err)
		}
		slowest = max(slowest, time.Since(start))
		if n > capLines {
			t.Fatalf("the log panel holds %d lines, over its cap %d", n, capLines)
		}
	}
	// The fake backend drops lines for a follower that falls behind, as a
	// journal reader may; a line written after the flood must still come.
	if err := e.fb.AddLog("site", "after the flood"); err != nil {
		t.Fatal(err)
	}
	ann.waitWithin(10*time.Second, "the last line", `(function () { var l = `+logTexts+`; return l[l.length-1] === "after the flood"; })()`)
	for range 3 {
		start := time.Now()
		n := evalPage[int](ann, count)
		slowest = max(slowest, time.Since(start))
		if n > capLines || n < 2 {
			t.Errorf("the log panel holds %d lines, want 2..%d", n, capLines)
		}
	}
	if nodes := evalPage[int](ann, `document.querySelector("pre[data-testid=log]").childNodes.length`); nodes > capLines {
		t.Errorf("the log panel holds %d nodes, over its cap %d", nodes, capLines)
	}
	if !evalPage[bool](ann, `(function () { var v = document.querySelector("pre[data-testid=log]"); return v.scrollTop + v.clientHeight >= v.scrollHeight - 4; })()`) {
		t.Errorf("the log panel does not follow its newest line")
	}
	t.Logf("slowest answer of the page during the flood: %v", slowest)
}

// recordLiveStates makes the page keep every live state it goes through
// from now on in window.__states.
func (b *browserTab) recordLiveStates() {
	b.t.Helper()
	evalPage[chromedp.Void](b, `window.__states = []; new MutationObserver(function () {
		window.__states.push(document.body.getAttribute("data-live-state")); }).observe(document.body, {attributes: true, attributeFilter: ["data-live-state"]})`)
}

// logMarks is the text of each marker in the log panel.
const logMarks = `Array.from(document.querySelectorAll("pre[data-testid=log] .mark")).map(function (m) { return m.textContent; })`

// browserPanelRestart: the panel restarts (its sockets close with 1012,
// its log follows start a new numbering); the page reconnects by itself
// and its log starts over once, with a marker saying so, and shows no line
// twice.
func browserPanelRestart(t *testing.T, c *chrome) {
	p := newTrackedPanel(t, nil)
	e := p.e
	e.mkInstance("site", nil)
	ann := c.person(t, e.base, "ann")
	ann.login("ann")
	ann.open("/instances/site")
	ann.waitLive()
	ann.markPage()
	lw := &lineWriter{t: t, e: e, id: "site"}
	add, shows := lw.add, lw.shows
	add(1, 5)
	ann.waitWithin(liveWithin, "the first lines", shows(5))
	ann.recordLiveStates()
	p.restart()
	ann.waitWithin(5*time.Second, "the page to reconnect by itself",
		`window.__states.indexOf("closed") >= 0 && document.body.getAttribute("data-live-state") === "open"`)
	add(6, 7)
	ann.waitWithin(liveWithin, "the lines written after the restart", shows(7))
	if got := evalPage[[]string](ann, logTexts); !slices.Equal(got, lw.want) {
		t.Errorf("after the restart the log panel shows\n%q\nwant each line once, in order:\n%q", got, lw.want)
	}
	marks := evalPage[[]string](ann, logMarks)
	if len(marks) != 1 || !strings.Contains(marks[0], "log restarted") {
		t.Errorf("the log panel shows markers %q, want one saying the log restarted", marks)
	}
	ann.noReload()
}

// browserRemovedWhileOpen: an instance removed while its page is open shows
// as removed, with nothing left to click, and the page stops trying to
// reconnect to it.
func browserRemovedWhileOpen(t *testing.T, c *chrome) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	ann := c.person(t, e.base, "ann")
	ann.login("ann")
	ann.open("/instances/site")
	ann.waitLive()
	ann.markPage()
	ann.recordLiveStates()
	if err := e.svc.Remove(context.Background(), rootPrincipal(), "site", false); err != nil {
		t.Fatal(err)
	}
	ann.waitWithin(liveWithin, "the page to show the instance removed", pageCell("state")+` === "removed"`)
	ann.waitWithin(liveWithin, "the page to say the instance is gone", `document.getElementById("live-status").textContent === "This instance is gone."`)
	if n := evalPage[int](ann, `document.querySelectorAll("button[data-act]:not([disabled])").length`); n != 0 {
		t.Errorf("%d action buttons still enabled", n)
	}
	// The first reconnect would come within 625 ms.
	time.Sleep(time.Second)
	if states := evalPage[[]string](ann, `window.__states`); slices.Contains(states, "connecting") {
		t.Errorf("the page tried to reconnect to a removed instance: states %q", states)
	}
	ann.noReload()
}

// ---- a panel whose connections a test can cut --------------------------------------------------------------

// cutListener is a TCP listener that can drop every connection it gave out,
// as a network outage does, and hold new ones until the network is back.
type cutListener struct {
	net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	down   bool
	closed bool
	conns  map[net.Conn]struct{}
}

func newCutListener(ln net.Listener) *cutListener {
	l := &cutListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *cutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// While the network is down a new connection waits (the browser's
	// attempt hangs, as it does on a lost route).
	for l.down && !l.closed {
		l.cond.Wait()
	}
	l.conns[c] = struct{}{}
	return &cutConn{Conn: c, l: l}, nil
}

func (l *cutListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// cut takes the network down: every open connection is closed at once,
// websockets included, without a close frame. It returns how many.
func (l *cutListener) cut() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	n := len(l.conns)
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
	return n
}

// restore brings the network back.
func (l *cutListener) restore() {
	l.mu.Lock()
	l.down = false
	l.cond.Broadcast()
	l.mu.Unlock()
}

type cutConn struct {
	net.Conn
	l    *cutListener
	once sync.Once
}

func (c *cutConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// trackedPanel is newPanelEnvWith's wiring (wirePanel) with three
// additions: tweak may change the web options (a public URL, trusted
// proxies); the TCP listener is a cutListener; and the panel process can
// restart on the same address, over the same database and the same (fake)
// host, as `systemctl restart panel` would.
type trackedPanel struct {
	e     *panelEnv
	ln    *cutListener
	tweak func(*web.Options)
	log   *slog.Logger
	stop  func() // stops the running process and waits for it
}

func newTrackedPanel(t *testing.T, tweak func(*web.Options)) *trackedPanel {
	t.Helper()
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	p := &trackedPanel{e: &panelEnv{t: t, db: db, fb: fb}, tweak: tweak, log: procmgrtest.Logger(t, slog.LevelDebug)}
	p.start("127.0.0.1:0")
	t.Cleanup(func() { p.stop() })
	p.e.addUsers()
	return p
}

// start runs a panel process on addr and points p.e at it.
func (p *trackedPanel) start(addr string) {
	t, e := p.e.t, p.e
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln := newCutListener(tcp)
	wopt := web.Options{ListenAddr: ln.Addr().String()}
	if p.tweak != nil {
		p.tweak(&wopt)
	}
	parts := wirePanel(t, e.db, e.fb, p.log, wopt, nil, nil)
	stop := parts.run(t, func(ctx context.Context) error { return parts.srv.Serve(ctx, ln) })
	// The network comes back first: an Accept held while "down" must return
	// for the server to stop.
	p.stop = func() { ln.restore(); stop() }
	p.ln = ln
	e.svc, e.acc, e.hub, e.srv, e.base = parts.svc, parts.acc, parts.hub, parts.srv, "http://"+ln.Addr().String()
}

// restart stops the panel (its hub closes every socket with 1012) and
// starts a new one on the same address.
func (p *trackedPanel) restart() {
	p.e.t.Helper()
	addr := p.ln.Addr().String()
	p.stop()
	p.start(addr)
}

// lineWriter adds numbered lines to an instance's log and remembers them,
// for the stories that check what the page shows.
type lineWriter struct {
	t    *testing.T
	e    *panelEnv
	id   string
	want []string
}

func (w *lineWriter) add(from, to int) {
	w.t.Helper()
	for i := from; i <= to; i++ {
		line := fmt.Sprintf("line %02d", i)
		if err := w.e.fb.AddLog(procmgr.InstanceID(w.id), line); err != nil {
			w.t.Fatal(err)
		}
		w.want = append(w.want, line)
	}
}

// shows is a page expression: the log's last line is the nth added.
func (w *lineWriter) shows(n int) string {
	return fmt.Sprintf(`(function () { var l = %s; return l.length >= %d && l[l.length-1] === %s; })()`, logTexts, n, jsQuote(w.want[n-1]))
}

// browserAccessLogRefresh: a customer sees the last requests to their site
// on its page, and Refresh brings the new ones in place.
func browserAccessLogRefresh(t *testing.T, c *chrome) {
	front := &accessFront{lines: map[procmgr.InstanceID][]string{}}
	e := newPanelEnvFront(t, nil, front)
	uid := e.alice.ID
	if _, err := e.svc.Create(context.Background(), auth.Principal{Name: "root", Role: auth.RoleAdmin},
		instances.CreateRequest{ID: "shop", OwnerID: &uid, Spec: procmgr.SpecInput{Domains: []string{"shop.example.test"}}}); err != nil {
		t.Fatal(err)
	}
	front.add("shop", `127.0.0.1 - - [02/Dec/2026:16:21:23 +0000] "GET /first HTTP/1.1" 200 343 "-" "curl" 0.001`)
	alice := c.person(t, e.base, "alice")
	alice.login("alice")
	alice.open("/instances/shop")
	const shown = `(document.querySelector("pre[data-testid=access-log]") || {}).textContent || ""`
	if got := evalPage[string](alice, shown); !strings.Contains(got, "GET /first") {
		t.Fatalf("the page shows %q, want the first request", got)
	}
	alice.markPage()
	front.add("shop", `127.0.0.1 - - [02/Dec/2026:16:21:24 +0000] "GET /second HTTP/1.1" 200 343 "-" "curl" 0.001`)
	alice.do("click Refresh", chromedp.Click(chromedp.CSS(`#access-log .log-tools button`)))
	alice.waitFor("the second request", "("+shown+`).indexOf("GET /second") >= 0`)
	alice.noReload()
	if n := evalPage[int](alice, `document.querySelectorAll("#access-log").length`); n != 1 {
		t.Errorf("%d access-log sections after the refresh, want 1", n)
	}
}
