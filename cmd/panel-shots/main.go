// Command panel-shots signs in to a running panel with headless chromium and
// writes PNG screenshots of the dashboard and one instance page, at desktop
// and phone widths, in the light and the dark colour scheme, for the README
// and for reviewing the look of a change.
//
//	PANEL_PASSWORD=... panel-shots -url http://127.0.0.1:8080 -user admin -out docs/screenshots
//
// The password comes from $PANEL_PASSWORD or -password-file, never from the
// command line (where ps would show it). The pages are shot once live (their
// websocket open), full length.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/ikabud/panel/internal/web/browsertest"
)

// viewport is a screen size shots are taken at.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var viewports = []viewport{
	{"desktop", 1366, 900, false},
	{"phone", 390, 844, true},
}

var schemes = []string{"light", "dark"}

const (
	totalTimeout = 3 * time.Minute
	pageTimeout  = 20 * time.Second
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the panel's address, as a browser opens it")
	user := flag.String("user", "admin", "user to sign in as")
	passFile := flag.String("password-file", "", "file whose first line is the password (default: $PANEL_PASSWORD)")
	out := flag.String("out", "docs/screenshots", "directory the PNGs are written to")
	instance := flag.String("instance", "", "instance whose page is shot (default: the first running one on the dashboard)")
	flag.Parse()
	if err := run(*base, *user, *passFile, *out, *instance); err != nil {
		fmt.Fprintln(os.Stderr, "panel-shots:", err)
		os.Exit(1)
	}
}

func run(base, user, passFile, out, instance string) error {
	base = strings.TrimRight(base, "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port or https://host", base)
	}
	password, err := readPassword(passFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "panel-shots-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), totalTimeout)
	defer cancel()
	tab, stop, err := browsertest.Start(ctx, profile)
	if err != nil {
		return err
	}
	defer stop()

	s := shooter{ctx: tab, base: base, out: out}
	if err := s.login(user, password); err != nil {
		return err
	}
	if instance == "" {
		if instance, err = s.pickInstance(); err != nil {
			return err
		}
	}
	pages := []struct{ name, path string }{
		{"dashboard", "/"},
		{"instance", "/instances/" + url.PathEscape(instance)},
	}
	for _, vp := range viewports {
		for _, scheme := range schemes {
			for _, pg := range pages {
				file := filepath.Join(out, fmt.Sprintf("%s-%s-%s.png", pg.name, vp.name, scheme))
				if err := s.shoot(vp, scheme, pg.path, file); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				fmt.Println(file)
			}
		}
	}
	return nil
}

func readPassword(file string) (string, error) {
	if file == "" {
		if p := os.Getenv("PANEL_PASSWORD"); p != "" {
			return p, nil
		}
		return "", errors.New("no password: set PANEL_PASSWORD or give -password-file")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	p, _, _ := strings.Cut(string(b), "\n")
	if p = strings.TrimRight(p, "\r"); p == "" {
		return "", fmt.Errorf("%s: the first line is empty", file)
	}
	return p, nil
}

// shooter drives one tab.
type shooter struct {
	ctx  context.Context
	base string
	out  string
}

func (s shooter) do(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(s.ctx, pageTimeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// waitFor polls the script expression cond until it is true.
func (s shooter) waitFor(what, cond string) error {
	deadline := time.Now().Add(pageTimeout)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			return fmt.Errorf("waited %v for %s (last error: %v)", pageTimeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s shooter) login(user, password string) error {
	if err := s.do(chromedp.Navigate(s.base + "/login")); err != nil {
		return err
	}
	if err := s.waitFor("the sign-in form", `!!document.getElementById("username")`); err != nil {
		return err
	}
	if err := s.do(
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password+"\r"),
	); err != nil {
		return err
	}
	if err := s.waitFor("the dashboard", `location.pathname === "/" && !!document.querySelector("[data-testid=instances]")`); err != nil {
		msg, _ := chromedp.Run(s.ctx, chromedp.Evaluate[string](`(document.querySelector("[data-testid=login-error]") || {}).textContent || ""`))
		if msg != "" {
			return fmt.Errorf("sign in as %s: %s", user, msg)
		}
		return fmt.Errorf("sign in as %s: %w", user, err)
	}
	return nil
}

// pickInstance takes the first running instance on the dashboard, or the
// first of any state.
func (s shooter) pickInstance() (string, error) {
	id, err := chromedp.Run(s.ctx, chromedp.Evaluate[string](`(function () {
		var r = document.querySelector("tr[data-id][data-state=running]") || document.querySelector("tr[data-id]");
		return r ? r.getAttribute("data-id") : ""; })()`))
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("the dashboard lists no instance; give -instance")
	}
	return id, nil
}

// shoot opens path at vp in scheme, waits until the page is live and drawn,
// and writes a full-length PNG to file.
func (s shooter) shoot(vp viewport, scheme, path, file string) error {
	var opts []chromedp.EmulateViewportOption
	if vp.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	setMedia := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
	if err := s.do(chromedp.EmulateViewport(vp.width, vp.height, opts...), setMedia, chromedp.Navigate(s.base+path)); err != nil {
		return err
	}
	// Live, and on an instance page the log's first lines in (its status
	// line leaves "Connecting…" once they are drawn).
	if err := s.waitFor("the live connection", `document.body.getAttribute("data-live-state") === "open" &&
		!/Connecting/.test((document.querySelector("[data-log-status]") || {}).textContent || "")`); err != nil {
		return err
	}
	// Fonts loaded, and two frames for the page script's first drawing
	// (log lines, charts) to land.
	if err := s.do(chromedp.Evaluate[chromedp.Void](`document.fonts.ready.then(function () {
		return new Promise(function (ok) { requestAnimationFrame(function () { requestAnimationFrame(ok); }); }); })`,
		chromedp.EvalAwaitPromise)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, pageTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(file, png, 0o644)
}
