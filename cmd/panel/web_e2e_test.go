package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// TestWebLiveOnRealBackends: the real binary on each real backend, seen
// from the web panel as support staff: a line PHP writes in an instance
// reaches the instance page's websocket, a kill -9 of the master shows on
// the dashboard's websocket with the new PID, and support's stop is refused.
func TestWebLiveOnRealBackends(t *testing.T) {
	forEachBackend(t, testWebLive)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var passwordRe = regexp.MustCompile(`Password \(shown once\): (\S+)`)

func testWebLive(t *testing.T, backend string) {
	addr := freeAddr(t)
	d := newDaemonOn(t, backend, addr)
	out := d.must("user", "add", "sue", "--role", "support", "--db", d.db)
	m := passwordRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("user add printed no password:\n%s", out)
	}
	id := string(procmgrtest.NewID("web"))
	d.must("create", id)
	base, origin := "http://"+addr, "http://"+addr

	// Sign in through the form.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := post("/login", url.Values{"username": {"sue"}, "password": {m[1]}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %s", res.Status)
	}
	dial := func(query string) *websocket.Conn {
		t.Helper()
		u, _ := url.Parse(base)
		h := http.Header{"Origin": {origin}}
		for _, ck := range jar.Cookies(u) {
			h.Add("Cookie", ck.Name+"="+ck.Value)
		}
		conn, res, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws"+query, h)
		if err != nil {
			t.Fatalf("websocket %s: %v %v", query, res, err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	page, dash := dial("?instance="+id), dial("")
	read := func(conn *websocket.Conn, what string, ok func(map[string]any) bool) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			var msg map[string]any
			if err := conn.ReadJSON(&msg); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if ok(msg) {
				return
			}
		}
	}
	row := func(msg map[string]any) map[string]any {
		if msg["type"] == "row" {
			r, _ := msg["row"].(map[string]any)
			if r["id"] == id {
				return r
			}
		}
		return nil
	}
	read(dash, "the dashboard's snapshot", func(msg map[string]any) bool { return msg["type"] == "snapshot" })

	// A line PHP writes in the instance: a script run through the pool.
	mark := fmt.Sprintf("ikabud-web-e2e-%d", time.Now().UnixNano())
	script := filepath.Join(d.layout.PublicDir(procmgr.InstanceID(id)), "log.php")
	if err := os.WriteFile(script, []byte(`<?php error_log("`+mark+`"); echo "ok";`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := fcgi.Do(ctx, d.layout.SocketPath(procmgr.InstanceID(id)), fcgi.Request{Params: map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
		"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/log.php", "REQUEST_URI": "/log.php", "DOCUMENT_URI": "/log.php",
	}})
	if err != nil || !strings.Contains(string(resp.Body), "ok") {
		t.Fatalf("running log.php: %v %+v", err, resp)
	}
	read(page, "PHP's line on the instance page", func(msg map[string]any) bool {
		if msg["type"] != "logs" {
			return false
		}
		for _, l := range msg["lines"].([]any) {
			if strings.Contains(l.(map[string]any)["text"].(string), mark) {
				return true
			}
		}
		return false
	})

	// kill -9 of the master, from outside the panel.
	pid := field(t, pidRe, d.must("status", id))
	if pid <= 1 {
		t.Fatalf("no PID to kill")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	read(dash, "the new PID on the dashboard", func(msg map[string]any) bool {
		r := row(msg)
		return r != nil && r["state"] == "running" && r["pid"] != float64(pid) && r["pid"] != float64(0)
	})

	// Support changes nothing.
	if res := post("/instances/"+id+"/stop", url.Values{}); res.StatusCode != http.StatusForbidden {
		t.Errorf("support's stop: %s, want 403", res.Status)
	}
	if st := d.must("status", id); !strings.Contains(st, "State: running") {
		t.Errorf("after support's refused stop:\n%s", st)
	}
}

// TestTokenCommands: `panel token add/list/revoke` through the daemon, and
// the token working on /api/v1 over TCP as its user until it is revoked.
func TestTokenCommands(t *testing.T) {
	addr := freeAddr(t)
	d := newDaemonOn(t, "supervise", addr)
	d.must("user", "add", "carl", "--role", "customer", "--db", d.db)
	out := d.must("token", "add", "carl", "--name", "deploy")
	tokenRe := regexp.MustCompile(`(?m)^(ikb_[a-z2-7]+)$`)
	m := tokenRe.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "Token 1 for carl (deploy), shown once") {
		t.Fatalf("token add printed:\n%s", out)
	}
	if list := d.must("token", "list"); !strings.Contains(list, "carl") || !strings.Contains(list, "deploy") || strings.Contains(list, m[1]) {
		t.Errorf("token list (must name it, never show it):\n%s", list)
	}
	get := func() int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/instances", nil)
		req.Header.Set("Authorization", "Bearer "+m[1])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := get(); s != http.StatusOK {
		t.Fatalf("the token on /api/v1: %d", s)
	}
	if out := d.must("token", "revoke", "1"); !strings.Contains(out, "Revoked token 1") {
		t.Errorf("revoke printed %q", out)
	}
	if s := get(); s != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d", s)
	}
	if _, err := d.panel("token", "revoke", "nope"); err == nil {
		t.Errorf("revoke of a non-number succeeded")
	}
	audit := d.must("audit", "-n", "10")
	for _, action := range []string{"token-create", "token-revoke"} {
		if !strings.Contains(audit, action) {
			t.Errorf("audit lacks %s:\n%s", action, audit)
		}
	}
}

// TestTakenHTTPAddressDoesNotStopThePanel: someone (a tenant's PHP, say)
// holds the panel's TCP address while it starts; the panel serves its Unix
// socket anyway, and takes the address once it is free.
func TestTakenHTTPAddressDoesNotStopThePanel(t *testing.T) {
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := holder.Addr().String()
	d := newDaemonOn(t, "supervise", addr) // returns once the socket answers
	if out := d.must("list"); !strings.Contains(out, "ID") {
		t.Errorf("list over the socket while the address is taken:\n%s", out)
	}
	holder.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the panel never took its address after it was freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
