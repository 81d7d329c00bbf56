package nginx_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/nginx"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func mustSpec(t *testing.T, id string, in procmgr.SpecInput) procmgr.Spec {
	t.Helper()
	s, err := procmgr.ParseSpec(id, in, nil)
	if err != nil {
		t.Fatalf("ParseSpec(%s): %v", id, err)
	}
	return s
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -run %s -update to write it)", err, t.Name())
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the rendered output (run with -update if intended):\n%s", path, got)
	}
}

var testLayout = procmgr.Layout{InstancesRoot: "/srv/ikabud/instances", ConfigRoot: "/etc/ikabud", RuntimeRoot: "/run/ikabud", WebUser: "www-data"}

func TestRenderGolden(t *testing.T) {
	ln, err := nginx.ParseListen(":80")
	if err != nil {
		t.Fatal(err)
	}
	blog := mustSpec(t, "blog", procmgr.SpecInput{Domains: []string{"blog.example.test", "www.blog.example.test"}})
	site := nginx.SiteOf(testLayout, blog)
	site.AccessLog = "/var/log/ikabud-sites/access.log"
	golden(t, "site-blog.conf", nginx.RenderSite(ln, site))
	big := mustSpec(t, "big-uploads", procmgr.SpecInput{Domains: []string{"xn--bcher-kva.example"}, UploadMax: "2G", MaxExecutionTime: "300"})
	golden(t, "site-big-uploads.conf", nginx.RenderSite(ln, nginx.SiteOf(testLayout, big)))
	golden(t, "http.conf", nginx.RenderHTTP(ln, "/etc/ikabud/nginx/gen-1/sites"))
}

func TestParseListen(t *testing.T) {
	for in, want := range map[string]string{":80": "127.0.0.1:80", "127.0.0.1:8080": "127.0.0.1:8080", "[::]:80": "[::1]:80", "0.0.0.0:81": "127.0.0.1:81"} {
		l, err := nginx.ParseListen(in)
		if err != nil || l.ProbeAddr() != want {
			t.Errorf("ParseListen(%q) = %v, %v; probe %s, want %s", in, l, err, l.ProbeAddr(), want)
		}
	}
	for _, in := range []string{"80", "localhost:80", ":0", ":65536", ":http", "1.2.3.4:80;", "[fe80::1%eth0]:80", ":080"} {
		if l, err := nginx.ParseListen(in); err == nil {
			t.Errorf("ParseListen(%q) = %v, want an error", in, l)
		}
	}
}

// rig is a real nginx supervised by a Manager, on a free loopback port, with
// its tree under a temporary directory.
type rig struct {
	m      *nginx.Manager
	run    *nginx.Supervised
	layout procmgr.Layout
	addr   string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newRig(t *testing.T) *rig {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		t.Fatal("nginx is missing: install Debian's nginx package (scripts/deps.sh does)")
	}
	// Not t.TempDir: its parent is private, and nginx's workers
	// (www-data) must reach the document roots.
	root, err := os.MkdirTemp("", "ikabud-nginx-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	for p := filepath.Dir(root); p != "/"; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not searchable by nginx's workers", p)
		}
	}
	l := procmgr.Layout{InstancesRoot: root + "/srv", ConfigRoot: root + "/etc", RuntimeRoot: root + "/run", WebUser: "www-data", UnitPrefix: "x"}
	for _, d := range []string{l.InstancesRoot, l.ConfigRoot, l.RuntimeRoot} {
		os.MkdirAll(d, 0o755)
	}
	ln, err := nginx.ParseListen("127.0.0.1:" + strconv.Itoa(freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	main := root + "/etc/nginx-main.conf"
	run := &nginx.Supervised{Main: main, PIDFile: root + "/run/nginx.pid", Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	m, err := nginx.New(nginx.Options{Layout: l, Listen: ln, Runner: run, AccessLogDir: root + "/log-sites"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, nginx.RenderMain(nginx.MainOptions{HTTPConf: m.LiveHTTPConf(), WebUser: "www-data", PIDFile: run.PIDFile}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		run.Stop(ctx)
	})
	return &rig{m: m, run: run, layout: l, addr: ln.ProbeAddr()}
}

// get asks nginx for path on host.
func (r *rig) get(t *testing.T, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.addr+path, nil)
	req.Host = host
	res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// site makes an instance's public/ with one file, owned by uid.
func (r *rig) site(t *testing.T, id string, uid int, domains ...string) procmgr.Spec {
	t.Helper()
	spec := mustSpec(t, id, procmgr.SpecInput{Domains: domains})
	pub := r.layout.PublicDir(spec.ID)
	if err := os.MkdirAll(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(pub), 0o755)
	if err := os.WriteFile(pub+"/hello.txt", []byte("hello from "+id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub+"/index.php", []byte("<?php echo 'php of "+id+"';\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(pub), pub, pub + "/hello.txt", pub + "/index.php"} {
		os.Lchown(p, uid, uid)
	}
	return spec
}

// twoSites publishes site-a (a.example.test, and www.a.example.test with
// www) and site-b (b.example.test), owned by different users.
func (r *rig) twoSites(t *testing.T, ctx context.Context, www bool) (a, b procmgr.Spec) {
	t.Helper()
	domains := []string{"a.example.test"}
	if www {
		domains = append(domains, "www.a.example.test")
	}
	a = r.site(t, "site-a", 4001, domains...)
	b = r.site(t, "site-b", 4002, "b.example.test")
	for _, s := range []procmgr.Spec{a, b} {
		if err := r.m.Publish(ctx, s); err != nil {
			t.Fatalf("Publish %s: %v", s.ID, err)
		}
	}
	return a, b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPublishServesAndUnknownHostsGetNothing(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	a, b := r.twoSites(t, ctx, true)
	for host, want := range map[string]string{"a.example.test": "hello from site-a", "www.a.example.test": "hello from site-a", "b.example.test": "hello from site-b"} {
		if code, body := r.get(t, host, "/hello.txt"); code != 200 || strings.TrimSpace(body) != want {
			t.Errorf("%s: %d %q, want 200 %q", host, code, body, want)
		}
	}
	// An unknown host, and none at all, reach the default server.
	for _, host := range []string{"c.example.test", "", "127.0.0.1"} {
		if code, body := r.get(t, host, "/hello.txt"); code != 404 || strings.Contains(body, "hello") {
			t.Errorf("host %q: %d %q, want 404 and no site's content", host, code, body)
		}
	}
	// No pool runs: PHP answers 502 with the stopped page, at once.
	start := time.Now()
	code, body := r.get(t, "a.example.test", "/index.php")
	if code != 502 || !strings.Contains(body, "This site is stopped") || time.Since(start) > 2*time.Second {
		t.Errorf("PHP of a stopped site: %d in %s, %q", code, time.Since(start), body)
	}
	// Dot files are never served.
	os.WriteFile(r.layout.PublicDir(a.ID)+"/.env", []byte("SECRET=1"), 0o644)
	if code, body := r.get(t, "a.example.test", "/.env"); code != 404 || strings.Contains(body, "SECRET") {
		t.Errorf(".env: %d %q", code, body)
	}
	// The panel's paths answer loopback only; the probe sees the site.
	if code, body := r.get(t, "a.example.test", nginx.SitePath); code != 200 || !strings.HasPrefix(body, "site-a ") {
		t.Errorf("site path: %d %q", code, body)
	}
	// Withdrawn: its names answer as unknown hosts; the other site stays.
	if err := r.m.Withdraw(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := r.get(t, "a.example.test", "/hello.txt"); code != 404 {
		t.Errorf("withdrawn site answers %d", code)
	}
	if code, _ := r.get(t, "b.example.test", "/hello.txt"); code != 200 {
		t.Errorf("other site answers %d after a withdraw", code)
	}
	if got := r.m.Sites(); len(got) != 1 || got[0] != b.ID {
		t.Errorf("sites = %v", got)
	}
}

func TestLongestNamesPassNginx(t *testing.T) {
	r := newRig(t)
	label := strings.Repeat("a", 63)
	long := label + "." + label + "." + label + "." + strings.Repeat("b", 61)
	var many []string
	for i := 0; i < procmgr.MaxDomains; i++ {
		many = append(many, strconv.Itoa(i)+"x"+long[len(strconv.Itoa(i))+1:])
	}
	s := r.site(t, "long-names", 4003, many...)
	if err := r.m.Publish(ctxT(t), s); err != nil {
		t.Fatalf("32 names of 253 characters: %v", err)
	}
	if code, body := r.get(t, many[31], "/hello.txt"); code != 200 {
		t.Errorf("%d %q", code, body)
	}
}

func TestBrokenConfigIsRolledBack(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	a := r.site(t, "site-a", 4001, "a.example.test")
	if err := r.m.Publish(ctx, a); err != nil {
		t.Fatal(err)
	}
	live, _ := os.Readlink(filepath.Join(r.layout.ConfigRoot, "nginx", "live"))
	pid := r.run.PID()
	// A config broken on purpose: refused before any reload.
	err := r.m.ApplyFiles(ctx, map[string][]byte{"broken.conf": []byte("server { listen 1.2.3.4:80; bogus_directive on; }\n")})
	if err == nil || !strings.Contains(err.Error(), "bogus_directive") || !strings.Contains(err.Error(), "previous config is back") {
		t.Fatalf("ApplyFiles(broken) = %v, want nginx -t's refusal", err)
	}
	if now, _ := os.Readlink(filepath.Join(r.layout.ConfigRoot, "nginx", "live")); now != live {
		t.Errorf("live is %s after a refused change, want %s", now, live)
	}
	if code, _ := r.get(t, "a.example.test", "/hello.txt"); code != 200 {
		t.Errorf("the other site answers %d after a refused change", code)
	}
	if r.run.PID() != pid {
		t.Errorf("nginx master changed (%d -> %d)", pid, r.run.PID())
	}
	// And nginx still reloads for the rest.
	b := r.site(t, "site-b", 4002, "b.example.test")
	if err := r.m.Publish(ctx, b); err != nil {
		t.Fatalf("a change after a refused one: %v", err)
	}
	if code, _ := r.get(t, "b.example.test", "/hello.txt"); code != 200 {
		t.Errorf("new site answers %d", code)
	}
}

func TestPlantedLinksAreNotFollowed(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	a, b := r.twoSites(t, ctx, false)
	pubA := r.layout.PublicDir(a.ID)
	links := map[string]string{
		"passwd.txt": "/etc/passwd",
		"b.txt":      r.layout.PublicDir(b.ID) + "/hello.txt",
		"bdir":       r.layout.PublicDir(b.ID),
	}
	for name, target := range links {
		if err := os.Symlink(target, pubA+"/"+name); err != nil {
			t.Fatal(err)
		}
		os.Lchown(pubA+"/"+name, 4001, 4001)
	}
	// A link to the tenant's own file is followed.
	os.Symlink(pubA+"/hello.txt", pubA+"/own.txt")
	os.Lchown(pubA+"/own.txt", 4001, 4001)
	for _, path := range []string{"/passwd.txt", "/b.txt", "/bdir/hello.txt"} {
		code, body := r.get(t, "a.example.test", path)
		if code == 200 || strings.Contains(body, "root:") || strings.Contains(body, "site-b") {
			t.Errorf("%s through a planted link: %d %q", path, code, body)
		}
	}
	if code, body := r.get(t, "a.example.test", "/own.txt"); code != 200 || !strings.Contains(body, "site-a") {
		t.Errorf("own link: %d %q", code, body)
	}
}

func TestSupervisedNginxRestartsAndIsAdopted(t *testing.T) {
	r := newRig(t)
	pid := r.run.PID()
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.run.PID() == pid || r.run.PID() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nginx not started again after its master was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if up, why := r.m.Up(context.Background()); !up {
		t.Errorf("Up = false (%s)", why)
	}
	// A new runner (the next panel) adopts the running master.
	r.run.Close()
	next := &nginx.Supervised{Main: r.run.Main, PIDFile: r.run.PIDFile}
	if err := next.Ensure(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if next.PID() != r.run.PID() {
		t.Errorf("adopted pid %d, running %d", next.PID(), r.run.PID())
	}
}

// A change that changes no site (an instance without domains) does not
// reload nginx; the first change of a Manager always rewrites the tree.
func TestNoReloadWithoutASiteChange(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	live := func() string {
		s, _ := os.Readlink(filepath.Join(r.layout.ConfigRoot, "nginx", "live"))
		return s
	}
	if err := r.m.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	first := live()
	bare := mustSpec(t, "bare", procmgr.SpecInput{})
	if err := r.m.Publish(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Withdraw(ctx, "bare"); err != nil {
		t.Fatal(err)
	}
	if got := live(); got != first {
		t.Errorf("live went %s -> %s for changes that change no site", first, got)
	}
	a := r.site(t, "site-a", 4001, "a.example.test")
	if err := r.m.Publish(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := live(); got == first {
		t.Errorf("live still %s after a site was published", got)
	}
}

// getAs asks nginx for path on host with a User-Agent to find in the logs.
func (r *rig) getAs(t *testing.T, host, path, agent string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.addr+path, nil)
	req.Host = host
	req.Header.Set("User-Agent", agent)
	res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// awaitLogged waits (nginx flushes its buffer every 5 s) until id's
// requests since the test began include one with mark, and returns them.
func (r *rig) awaitLogged(t *testing.T, id procmgr.InstanceID, since time.Time, mark string) []string {
	t.Helper()
	deadline := time.Now().Add(12 * time.Second)
	for {
		lines, err := r.m.AccessLog(id, since, 100)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, mark) }) {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the access log of %s after 12 s: %q", mark, id, lines)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The sites log their visitors' requests (never the panel's probes) to one
// file, each read back alone and only since a given time (an earlier
// instance of the same id is not shown); rotated to access.log.1 past its
// size with nothing lost.
func TestAccessLogWrittenReadAndRotated(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	start := time.Now().Add(-time.Second)
	a, b := r.twoSites(t, ctx, false)
	if code := r.getAs(t, "a.example.test", "/hello.txt", "first-visitor"); code != 200 {
		t.Fatalf("GET a: %d", code)
	}
	lines := r.awaitLogged(t, a.ID, start, "first-visitor")
	for _, l := range lines {
		if strings.Contains(l, "/.ikabud/") {
			t.Errorf("the panel's probe is in the site's access log: %q", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "127.0.0.1 - - [") || !strings.Contains(last, `"GET /hello.txt HTTP/1.1" 200 `) {
		t.Errorf("last line %q: want the combined format, without the id and time", last)
	}
	if got, _ := r.m.AccessLog(b.ID, start, 100); len(got) != 0 {
		t.Errorf("site-b's access log has %q, want nothing (only site-a was visited)", got)
	}
	if got, _ := r.m.AccessLog(a.ID, time.Now().Add(time.Minute), 100); len(got) != 0 {
		t.Errorf("requests from before the instance was made are shown: %q", got)
	}
	if st, err := os.Stat(filepath.Dir(r.m.AccessLogPath())); err != nil || st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("access log directory: %v %v, want mode 0700, root's", st, err)
	}

	rotated, err := r.m.RotateLogs(ctx, 0)
	if err != nil || !rotated {
		t.Fatalf("RotateLogs: %v %v", rotated, err)
	}
	r.getAs(t, "a.example.test", "/hello.txt", "second-visitor")
	lines = r.awaitLogged(t, a.ID, start, "second-visitor")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "first-visitor") }) {
		t.Errorf("the line from before the rotation is not read: %q", lines)
	}
	cur, _ := os.ReadFile(r.m.AccessLogPath())
	old, _ := os.ReadFile(r.m.AccessLogPath() + ".1")
	if !strings.Contains(string(old), "first-visitor") || strings.Contains(string(cur), "first-visitor") {
		t.Errorf("after the rotation: the old file %q, the new %q", old, cur)
	}
}

// readTail's window starts at a line, whether or not the cut falls on one,
// and a log whose current file is read from its middle is not joined to
// its rotated file (a gap would look continuous).
func TestAccessLogTail(t *testing.T) {
	dir := t.TempDir()
	m, err := nginx.New(nginx.Options{Layout: procmgr.Layout{ConfigRoot: dir + "/etc", WebUser: "www-data"}, Listen: nginx.Listen{Port: 80},
		Runner: &nginx.Supervised{}, AccessLogDir: dir + "/sites"})
	if err != nil {
		t.Fatal(err)
	}
	p := m.AccessLogPath()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	line := func(b *strings.Builder, id string, sec int, text string) {
		fmt.Fprintf(b, "%s %d.000 %s\n", id, t0.Unix()+int64(sec), text)
	}
	var old, cur strings.Builder
	for i := range 3000 {
		line(&old, "site", i, fmt.Sprintf("old %06d", i))
		line(&old, "other", i, "other's")
	}
	line(&cur, "site", 3000, "cur 000000")
	line(&cur, "site-2", 3000, "not site's")
	line(&cur, "site", 3001, "cur 000001")
	os.WriteFile(p+".1", []byte(old.String()), 0o644)
	os.WriteFile(p, []byte(cur.String()), 0o644)
	lines, err := m.AccessLog("site", t0, 4)
	if err != nil || !slices.Equal(lines, []string{"old 002998", "old 002999", "cur 000000", "cur 000001"}) {
		t.Fatalf("last 4 across the rotation: %v %q", err, lines)
	}
	if lines, _ := m.AccessLog("site", t0.Add(2999*time.Second), 10); !slices.Equal(lines, []string{"old 002999", "cur 000000", "cur 000001"}) {
		t.Fatalf("since the 2,999th second: %q", lines)
	}
	// A current file larger than what is read: none of the rotated
	// file's lines, which would not follow on.
	var big strings.Builder
	for i := range 20000 {
		line(&big, "site", 4000+i, fmt.Sprintf("cur %06d %s", i, strings.Repeat("x", 1000)))
	}
	os.WriteFile(p, []byte(big.String()), 0o644)
	lines, _ = m.AccessLog("site", t0, 20000)
	if len(lines) == 0 || len(lines) >= 20000 || strings.HasPrefix(lines[0], "old") || !strings.HasPrefix(lines[len(lines)-1], "cur 019999") {
		t.Fatalf("a current file read from its middle: %d lines, the first %.10q", len(lines), lines[0])
	}
	// The window starts right at a line: that line is kept. A filler
	// line at the end moves the window's start to the next line's.
	data := big.String()
	cut := len(data) - 16<<20
	if cut <= 0 {
		t.Fatalf("the file is smaller than the 16 MiB read: %d", len(data))
	}
	next := cut + strings.IndexByte(data[cut:], '\n') + 1
	filler := strings.Repeat("-", next-cut-1) + "\n"
	os.WriteFile(p, []byte(data+filler), 0o644)
	want := strings.SplitN(data[next:], "\n", 2)[0]
	lines, _ = m.AccessLog("site", t0, 20000)
	if len(lines) == 0 || !strings.HasSuffix(want, lines[0]) {
		t.Fatalf("the window's first line: got %.20q, want the line %.30q", lines, want)
	}
	// The window starts inside a line whose end looks like the site's (a
	// visitor chooses its User-Agent): that piece is not a request.
	forged := fmt.Sprintf("site %d.000 FORGED\n", t0.Unix()+5000)
	var rest strings.Builder
	for i := 0; rest.Len()+len(forged) < 16<<20-2100; i++ {
		line(&rest, "site", 6000+i, fmt.Sprintf("tail %06d %s", i, strings.Repeat("y", 1000)))
	}
	pad := strings.Repeat("z", 16<<20-len(forged)-rest.Len()-1) + "\n"
	os.WriteFile(p, []byte("other 1.000 a visitor whose user agent ends in "+forged+rest.String()+pad), 0o644)
	lines, _ = m.AccessLog("site", t0, 20000)
	if len(lines) == 0 || slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "FORGED") }) {
		t.Fatalf("a piece of a line cut by the window read as a request: %d lines, the first %.20q", len(lines), lines)
	}
}
