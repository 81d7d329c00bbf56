package web_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
	"github.com/ikabud/panel/internal/web"
)

// proxySocket serves a panel's proxy socket to peers with the given uids and
// returns an HTTP client that talks over it.
func proxySocket(t *testing.T, uids ...int) (*http.Client, *store.DB) {
	t.Helper()
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	p := wirePanel(t, db, fb, procmgrtest.Logger(t, slog.LevelDebug), web.Options{PublicURL: "https://panel.example.test"}, nil, nil)
	(&panelEnv{t: t, acc: p.acc}).addUsers()
	path := filepath.Join(t.TempDir(), "web.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.run(t, func(ctx context.Context) error { return p.srv.ServeProxy(ctx, ln, uids...) }))
	c := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}}
	t.Cleanup(c.CloseIdleConnections)
	return c, db
}

// TestProxySocket: behind nginx on the proxy socket, the client address and
// scheme come from the proxy's headers (no tenant can reach the socket to
// forge them), and a peer that is not the web server is hung up on.
func TestProxySocket(t *testing.T) {
	c, db := proxySocket(t, 0) // the test runs as root, standing in for nginx
	login := func(xff string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://panel/login", strings.NewReader(url.Values{"username": {"ann"}, "password": {testPassword}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://panel.example.test")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-For", xff)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := login("203.0.113.50, 198.51.100.7")
	if ck := res.Header.Get("Set-Cookie"); res.StatusCode != http.StatusSeeOther || !strings.Contains(ck, "Secure") || !strings.HasPrefix(ck, "__Host-ikabud_session=") {
		t.Fatalf("sign in through the proxy: %s, cookie %q (want a Secure __Host- cookie: the proxy said https)", res.Status, ck)
	}
	evs, err := db.FindAudit(context.Background(), store.AuditFilter{Action: "login", Limit: 5})
	if err != nil || len(evs) == 0 {
		t.Fatalf("no login audited: %v", err)
	}
	// The last hop is what nginx saw; what the client put before it is not believed.
	if !strings.Contains(evs[0].Detail, "198.51.100.7") || strings.Contains(evs[0].Detail, "203.0.113.50") {
		t.Errorf("login audited with %q, want the proxy's last hop 198.51.100.7", evs[0].Detail)
	}

	// Someone who is not the web server (a tenant) is hung up on.
	other, _ := proxySocket(t, 12345)
	if _, err := other.Get("http://panel/healthz"); err == nil {
		t.Errorf("a peer that is not an allowed uid was served")
	}
	if res, err := c.Get("http://panel/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("healthz through the proxy socket: %v %v", res, err)
	}
}

// TestProxyNginxSocket: the README's recommended setup, nginx with TLS in
// front of the panel's proxy socket and no TCP port at all: sign-in with a
// Secure cookie, the browser's address from nginx's last hop only, and the
// live socket from the public origin.
func TestProxyNginxSocket(t *testing.T) {
	if _, err := os.Stat(nginxPath); err != nil {
		t.Fatalf("nginx missing: install Debian's nginx (scripts/deps.sh does): %v", err)
	}
	port := freePort(t)
	public := "https://127.0.0.1:" + port
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	p := wirePanel(t, db, fb, procmgrtest.Logger(t, slog.LevelDebug), web.Options{PublicURL: public}, nil, nil)
	sock := filepath.Join(t.TempDir(), "web.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// nginx runs as root here.
	t.Cleanup(p.run(t, func(ctx context.Context) error { return p.srv.ServeProxy(ctx, ln, 0) }))
	e := &panelEnv{t: t, db: db, fb: fb, acc: p.acc}
	e.addUsers()
	pool := startNginx(t, "127.0.0.1:"+port, "unix:"+sock+":")

	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: waitTimeout}
	tlsConf := &tls.Config{RootCAs: pool}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: waitTimeout,
		Transport:     &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: tlsConf},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(client.CloseIdleConnections)
	req, _ := http.NewRequest("POST", public+"/login", strings.NewReader(url.Values{"username": {"ann"}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", public)
	req.Header.Set("X-Forwarded-For", "203.0.113.7") // the client's own claim: not believed
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Set-Cookie"), "Secure") {
		t.Fatalf("sign in through nginx and the proxy socket: %s, cookie %q", res.Status, res.Header.Get("Set-Cookie"))
	}
	evs, err := db.FindAudit(context.Background(), store.AuditFilter{Action: "login", Limit: 5})
	if err != nil || len(evs) == 0 || !strings.Contains(evs[0].Detail, "127.0.0.2") || strings.Contains(evs[0].Detail, "203.0.113.7") {
		t.Errorf("login audited as %v (%v), want the browser's address 127.0.0.2 from nginx's hop", evs, err)
	}
	u, _ := url.Parse(public)
	h := http.Header{"Origin": {public}}
	for _, ck := range jar.Cookies(u) {
		h.Add("Cookie", ck.Name+"="+ck.Value)
	}
	wsDialer := websocket.Dialer{NetDialContext: dialer.DialContext, TLSClientConfig: tlsConf, HandshakeTimeout: waitTimeout}
	conn, resp, err := wsDialer.Dial("wss://127.0.0.1:"+port+"/ws", h)
	if err != nil {
		t.Fatalf("websocket through nginx and the proxy socket: %v %v", resp, err)
	}
	defer conn.Close()
	readUntil(t, conn, "the snapshot", func(m map[string]any) bool { return m["type"] == "snapshot" })
}
