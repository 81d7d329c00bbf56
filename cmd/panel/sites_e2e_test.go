package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// sitesDaemon is a daemon whose nginx (supervised, on a free loopback
// port) serves the instances' sites.
func sitesDaemon(t *testing.T, backend string) (*daemon, string) {
	t.Helper()
	addr := freeAddr(t)
	d := newDaemonOn(t, backend, "127.0.0.1:0", "--http-listen", addr, "--nginx", "supervise")
	t.Cleanup(func() { stopSupervisedNginx(d) })
	return d, addr
}

// stopSupervisedNginx ends the daemon's nginx: it outlives the panel by
// design, the test's must not.
func stopSupervisedNginx(d *daemon) {
	if data, err := os.ReadFile(filepath.Join(d.layout.RuntimeRoot, "nginx.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
			killGroup(pid)
		}
	}
}

// visit asks nginx at addr for path on host, as a visitor would.
func visit(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	res, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatalf("GET http://%s%s (Host %s): %v", addr, path, host, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// putIndex writes an index.php into the instance's public/, owned by it.
func putIndex(t *testing.T, d *daemon, id procmgr.InstanceID, body string) {
	t.Helper()
	putFile(t, d, id, "index.php", body)
}

// siteFiles lists the files of nginx's live config tree, with contents.
func siteFiles(t *testing.T, d *daemon) string {
	t.Helper()
	dir := filepath.Join(d.layout.ConfigRoot, "nginx", "live", "sites")
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"\n"+string(data))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestSitesThroughNginx(t *testing.T) {
	forEachBackend(t, testSitesThroughNginx)
}

func testSitesThroughNginx(t *testing.T, backend string) {
	d, addr := sitesDaemon(t, backend)
	a := procmgrtest.NewID("site")
	b := procmgrtest.NewID("other")
	domA := string(a) + ".example.test"
	domB := string(b) + ".example.test"
	d.must("create", string(a), "--domain", domA, "--domain", "www."+domA)
	d.must("create", string(b), "--domain", domB)
	putIndex(t, d, a, "<?php echo 'front page of ', getenv('USER') ?: 'a', ' ', PHP_VERSION;\n")
	putIndex(t, d, b, "<?php echo 'front page of b';\n")

	for _, host := range []string{domA, "www." + domA} {
		if code, body := visit(t, addr, host, "/"); code != 200 || !strings.Contains(body, "front page of") || strings.Contains(body, "of b") {
			t.Errorf("Host %s: %d %q, want a's front page", host, code, body)
		}
	}
	if code, body := visit(t, addr, "unknown.example.test", "/"); code != 404 || strings.Contains(body, "front page") {
		t.Errorf("unknown host: %d %q", code, body)
	}
	// The visits are in a's access log (nginx writes it every 5 s).
	var access string
	for deadline := time.Now().Add(12 * time.Second); !strings.Contains(access, `"GET / HTTP/1.1" 200`); time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("panel logs --access after 12 s:\n%s", access)
		}
		access = d.must("logs", string(a), "--access", "-n", "20")
	}
	if strings.Contains(access, "/.ikabud/") {
		t.Errorf("the panel's probes are in the site's access log:\n%s", access)
	}
	if _, err := os.Stat(filepath.Join("/var/log", d.layout.UnitPrefix+"-sites", "access.log")); err != nil {
		t.Errorf("the sites' access log: %v", err)
	}
	out := d.must("status")
	if !strings.Contains(out, "Web server: up") {
		t.Errorf("panel status:\n%s", out)
	}
	if out := d.must("health", string(a)); !strings.Contains(out, "Through nginx: ok, 200") {
		t.Errorf("health:\n%s", out)
	}

	// Stopped: 502 at once with the stopped page; started: 200 again.
	d.must("stop", string(a))
	start := time.Now()
	code, body := visit(t, addr, domA, "/")
	if code != 502 || !strings.Contains(body, "This site is stopped") {
		t.Errorf("stopped site: %d %q", code, body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("stopped site answered after %s, want at once", took)
	}
	if out, err := d.panel("health", string(a)); err == nil || !strings.Contains(out, "Through nginx: failed: 502") {
		t.Errorf("health of a stopped instance: %v\n%s", err, out)
	}
	if code, _ := visit(t, addr, domB, "/"); code != 200 {
		t.Errorf("the other site answers %d while a is stopped", code)
	}
	d.must("start", string(a))
	if code, body := visit(t, addr, domA, "/"); code != 200 || !strings.Contains(body, "front page of") {
		t.Errorf("started again: %d %q", code, body)
	}

	// Hostile and taken domains: refused, nothing changes on disk or in
	// nginx.
	before := siteFiles(t, d)
	for _, bad := range []string{"a b.example.test", "a;b.example.test", "a{b.example.test", "a~b.example.test", "$host",
		strings.Repeat("x", 64) + ".example.test", domB} {
		out, err := d.panel("set", string(a), "--domain", bad)
		if err == nil || !strings.Contains(out+err.Error(), "domains") {
			t.Errorf("set --domain %q: %v %s, want a domains error", bad, err, out)
		}
		if _, err := d.panel("create", string(procmgrtest.NewID("bad")), "--domain", bad); err == nil {
			t.Errorf("create --domain %q accepted", bad)
		}
	}
	if after := siteFiles(t, d); after != before {
		t.Errorf("the sites' config changed after refused requests:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// set --domain replaces the list.
	d.must("set", string(a), "--domain", "new-"+domA)
	if code, _ := visit(t, addr, "new-"+domA, "/"); code != 200 {
		t.Errorf("new domain answers %d", code)
	}
	if code, _ := visit(t, addr, domA, "/"); code != 404 {
		t.Errorf("the replaced domain answers %d, want 404", code)
	}

	// remove --purge: no vhost left; the name answers as unknown.
	d.must("remove", string(a), "--purge")
	if code, _ := visit(t, addr, "new-"+domA, "/"); code != 404 {
		t.Errorf("removed site answers %d", code)
	}
	if files := siteFiles(t, d); strings.Contains(files, string(a)) {
		t.Errorf("vhost of a removed instance left:\n%s", files)
	}
	// A new instance of the same id shows none of the earlier one's
	// requests.
	time.Sleep(1100 * time.Millisecond)
	d.must("create", string(a))
	if out := d.must("logs", string(a), "--access"); strings.TrimSpace(out) != "" {
		t.Errorf("a new instance of the id shows the earlier one's requests:\n%s", out)
	}
	d.must("remove", string(a), "--purge")
	if code, _ := visit(t, addr, domB, "/"); code != 200 {
		t.Errorf("the other site answers %d after a's removal", code)
	}
}

func killGroup(pid int) {
	// nginx runs in its own session: its group is its master's pid.
	syscall.Kill(-pid, syscall.SIGKILL)
}
