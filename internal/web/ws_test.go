package web_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/instances/fakebackend"
)

// TestWebsocketUpgradeChecks: Origin (required, own), session, and the
// instance's visibility are all checked before the upgrade.
func TestWebsocketUpgradeChecks(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("bob-site", &e.bob)
	a := e.login("alice")
	cases := []struct {
		name, query, origin string
		b                   *browser
		want                int
	}{
		{"no origin", "", "", a, http.StatusForbidden},
		{"cross-site origin", "", "http://evil.example", a, http.StatusForbidden},
		{"no session", "", e.base, e.browser(), http.StatusUnauthorized},
		{"someone else's instance", "?instance=bob-site", e.base, a, http.StatusNotFound},
		{"no such instance", "?instance=nope", e.base, a, http.StatusNotFound},
	}
	for _, c := range cases {
		conn, resp, err := c.b.dialWS(c.query, c.origin)
		if err == nil {
			conn.Close()
			t.Errorf("%s: upgraded", c.name)
			continue
		}
		if resp == nil || resp.StatusCode != c.want {
			t.Errorf("%s: %v %v, want %d", c.name, resp, err, c.want)
		}
	}
	conn, _, err := a.dialWS("", e.base)
	if err != nil {
		t.Fatalf("a proper upgrade: %v", err)
	}
	conn.Close()
}

// TestWebsocketLiveRows: a stop from one browser, and a crash, reach every
// open dashboard that may see the instance, and no other.
func TestWebsocketLiveRows(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("alice-site", &e.alice)
	a, s, b := e.login("alice"), e.login("sam"), e.login("bob")
	ca, _, err := a.dialWS("", e.base)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cs, _, err := s.dialWS("", e.base)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cb, _, err := b.dialWS("", e.base)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	for _, c := range []*websocket.Conn{ca, cs} {
		readUntil(t, c, "snapshot", func(m map[string]any) bool { return rowOf(m, "alice-site") != nil })
	}
	snap := readUntil(t, cb, "bob's snapshot", func(m map[string]any) bool { return m["type"] == "snapshot" })
	if rows, _ := snap["rows"].([]any); len(rows) != 0 {
		t.Errorf("bob's snapshot shows %v", rows)
	}
	if r := a.postForm("/instances/alice-site/stop", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("stop: %s", r)
	}
	for name, c := range map[string]*websocket.Conn{"alice": ca, "support": cs} {
		r := rowOf(readUntil(t, c, name+" sees stopped", func(m map[string]any) bool {
			r := rowOf(m, "alice-site")
			return r != nil && r["state"] == "stopped"
		}), "alice-site")
		if name == "support" && r["can_start"] == true {
			t.Errorf("support's row offers start")
		}
		if name == "alice" && r["can_start"] != true {
			t.Errorf("the owner's row does not offer start: %v", r)
		}
	}
	if r := a.postForm("/instances/alice-site/start", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("start: %s", r)
	}
	first := readUntil(t, ca, "running", func(m map[string]any) bool {
		r := rowOf(m, "alice-site")
		return r != nil && r["state"] == "running"
	})
	pid := rowOf(first, "alice-site")["pid"]
	// A crash: the new PID shows without a reload.
	if _, err := e.fb.Crash("alice-site"); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ca, "a new PID", func(m map[string]any) bool {
		r := rowOf(m, "alice-site")
		return r != nil && r["state"] == "running" && r["pid"] != pid
	})
	// Bob saw none of it.
	e.mkInstance("bob-site", &e.bob)
	m := readUntil(t, cb, "bob's own row", func(m map[string]any) bool { return m["type"] == "row" })
	if rowOf(m, "bob-site") == nil {
		t.Errorf("bob's first row message is %v, not his own instance", m)
	}
}

// TestWebsocketEndsWithSession: logout, a password change and disabling a
// user close their sockets with 4401.
func TestWebsocketEndsWithSession(t *testing.T) {
	e := newPanelEnv(t)
	closed := func(c *websocket.Conn, what string) {
		t.Helper()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, 4401) {
					t.Errorf("%s: socket ended with %v, want close 4401", what, err)
				}
				return
			}
		}
	}
	a := e.login("alice")
	c, _, err := a.dialWS("", e.base)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(deadline())
	a.postForm("/logout", url.Values{})
	closed(c, "logout")

	a = e.login("alice")
	c, _, err = a.dialWS("", e.base)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(deadline())
	if err := e.acc.ChangePassword(context.Background(), aliceP(e), testPassword, "another-password-1"); err != nil {
		t.Fatal(err)
	}
	closed(c, "password change")
	if r := a.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("session survived the password change: %d", r.status)
	}

	b := e.login("bob")
	c, _, err = b.dialWS("", e.base)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(deadline())
	adm := e.login("ann")
	if r := adm.postForm("/users/"+itoa(e.bob.ID)+"/disable", url.Values{"disabled": {"true"}}); r.status != http.StatusSeeOther {
		t.Fatalf("disable: %s", r)
	}
	closed(c, "disabled")
	if r := e.browser().postForm("/login", url.Values{"username": {"bob"}, "password": {testPassword}}); r.status != http.StatusUnauthorized {
		t.Errorf("a disabled user signed in: %d", r.status)
	}
}

// TestWebsocketLogFollow: a line the instance logs reaches the instance
// page's socket, numbered.
func TestWebsocketLogFollow(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	s := e.login("sam")
	c, _, err := s.dialWS("?instance=site", e.base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readUntil(t, c, "snapshot", func(m map[string]any) bool { return m["type"] == "snapshot" })
	if err := e.fb.AddLog("site", "PHP Warning: <b>hello</b>"); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, c, "the log line", func(m map[string]any) bool {
		if m["type"] != "logs" {
			return false
		}
		for _, l := range m["lines"].([]any) {
			if l.(map[string]any)["text"] == "PHP Warning: <b>hello</b>" {
				return true
			}
		}
		return false
	})
	if m["epoch"] == "" || m["id"] != "site" {
		t.Errorf("log message %v", m)
	}
	_ = fakebackend.FirstPID
}
