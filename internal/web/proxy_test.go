package web_test

// The panel behind a real nginx terminating TLS, configured with the server
// block the README recommends (nginxServerBlock): sign-in, the Secure
// cookie, form posts, the client address, and the live websocket, as a
// browser uses them through the proxy.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/web"
)

const nginxPath = "/usr/sbin/nginx"

// nginxServerBlock is the server block the README recommends, with the
// panel at upstream (host:port) and the certificate files given. /ws needs
// HTTP/1.1 and the Upgrade headers to become a websocket, and a read
// timeout well above the panel's 25 s ping period so that nginx never cuts
// an idle page; the panel believes X-Forwarded-For and X-Forwarded-Proto
// only from the addresses in --trusted-proxies.
func nginxServerBlock(listen, serverName, cert, key, upstream string) string {
	return fmt.Sprintf(`server {
    listen %[1]s ssl;
    server_name %[2]s;

    ssl_certificate     %[3]s;
    ssl_certificate_key %[4]s;

    # The panel refuses bodies over 64 KiB itself; refuse them here first.
    client_max_body_size 64k;

    proxy_http_version 1.1;

    location / {
        proxy_pass http://%[5]s;
        proxy_set_header Host              $host;
        proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }

    # Live updates: a websocket that stays open as long as the page. (A
    # location that sets any proxy_set_header inherits none from above, so
    # all are repeated here.)
    location = /ws {
        proxy_pass http://%[5]s;
        proxy_set_header Host              $host;
        proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade           $http_upgrade;
        proxy_set_header Connection        "upgrade";
        proxy_read_timeout 120s;
        proxy_send_timeout 120s;
        proxy_buffering off;
    }
}
`, listen, serverName, cert, key, upstream)
}

// TestProxyNginxTLS: through nginx with TLS, signing in sets a Secure
// cookie, forms post, the panel sees the browser's address, and the live
// socket works from the public origin and from nowhere else.
func TestProxyNginxTLS(t *testing.T) {
	if _, err := os.Stat(nginxPath); err != nil {
		t.Fatalf("nginx missing: install Debian's nginx (scripts/deps.sh does): %v", err)
	}
	port := freePort(t)
	public := "https://127.0.0.1:" + port
	e := newTrackedPanel(t, func(o *web.Options) {
		o.PublicURL = public
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}).e
	e.mkInstance("alice-site", &e.alice)
	pool := startNginx(t, "127.0.0.1:"+port, strings.TrimPrefix(e.base, "http://"))

	// The client comes from 127.0.0.2 (another loopback address), so the
	// address the panel records shows whether it read X-Forwarded-For.
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: waitTimeout}
	tlsConf := &tls.Config{RootCAs: pool}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: waitTimeout,
		Transport:     &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: tlsConf},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(client.CloseIdleConnections)
	send := func(method, path string, form url.Values, h http.Header) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, public+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range h {
			req.Header[k] = v
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s through nginx: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	own := http.Header{"Origin": {public}}

	if res, body := send("GET", "/healthz", nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("healthz through nginx: %d %s", res.StatusCode, body)
	}
	// A client may send its own X-Forwarded-For; only nginx's hop counts.
	spoof := http.Header{"Origin": {public}, "X-Forwarded-For": {"203.0.113.7"}}
	res, body := send("POST", "/login", url.Values{"username": {"alice"}, "password": {testPassword}}, spoof)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Fatalf("sign in through nginx: %d %s", res.StatusCode, body)
	}
	ck := res.Header.Get("Set-Cookie")
	for _, want := range []string{"ikabud_session=", "Secure", "HttpOnly"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %s", ck, want)
		}
	}
	evs, err := e.db.FindAudit(context.Background(), store.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, ev := range evs {
		if ev.Action == "login" && ev.Actor == "alice" {
			seen = append(seen, ev.Detail)
		}
	}
	if len(seen) != 1 || !strings.Contains(seen[0], "127.0.0.2") {
		t.Errorf("the sign-in is recorded as %q, want the client 127.0.0.2 (from nginx's X-Forwarded-For, not the client's own)", seen)
	}
	res, body = send("GET", "/", nil, nil)
	csrf := regexpFind(`data-csrf="([^"]+)"`, body)
	if res.StatusCode != http.StatusOK || csrf == "" {
		t.Fatalf("the dashboard through nginx: %d", res.StatusCode)
	}

	wsDialer := websocket.Dialer{NetDialContext: dialer.DialContext, TLSClientConfig: tlsConf, HandshakeTimeout: waitTimeout}
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		u, _ := url.Parse(public)
		for _, c := range jar.Cookies(u) {
			h.Add("Cookie", c.Name+"="+c.Value)
		}
		return wsDialer.Dial("wss://127.0.0.1:"+port+"/ws", h)
	}
	conn, _, err := dial(public)
	if err != nil {
		t.Fatalf("the live socket through nginx: %v", err)
	}
	defer conn.Close()
	readUntil(t, conn, "the snapshot", func(m map[string]any) bool { return m["type"] == "snapshot" && rowOf(m, "alice-site") != nil })
	if res, body := send("POST", "/instances/alice-site/stop", url.Values{"_csrf": {csrf}}, own); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("stop through nginx: %d %s", res.StatusCode, body)
	}
	readUntil(t, conn, "the stopped row", func(m map[string]any) bool {
		r := rowOf(m, "alice-site")
		return m["type"] == "row" && r != nil && r["state"] == "stopped"
	})

	// Only the public origin may open the socket: not another site, and
	// not the panel's own listener address, which browsers never see.
	for _, origin := range []string{"https://evil.example", e.base, "http://127.0.0.1:" + port} {
		c, res, err := dial(origin)
		if err == nil {
			c.Close()
			t.Errorf("a websocket from Origin %s was accepted through nginx", origin)
			continue
		}
		if res == nil || res.StatusCode != http.StatusForbidden {
			t.Errorf("a websocket from Origin %s: %v %v, want 403", origin, res, err)
		}
	}

	// And a real browser: signed in through the form, its page goes live
	// over wss through nginx and follows a change.
	c := startChrome(t, chromedp.IgnoreCertErrors)
	alice := c.person(t, public, "alice")
	alice.login("alice")
	alice.waitLive()
	if _, err := e.svc.Start(context.Background(), rootPrincipal(), "alice-site"); err != nil {
		t.Fatal(err)
	}
	alice.waitWithin(liveWithin, "alice-site running again", rowCell("alice-site", "state")+` === "running"`)
}

// freePort finds a TCP port on 127.0.0.1 nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startNginx runs an nginx of the test's own (its own config, pid, logs and
// temporary paths in t.TempDir(), in the foreground, one process) with
// nginxServerBlock on listen, proxying to upstream, and a fresh self-signed
// certificate for 127.0.0.1. It returns the pool that trusts the
// certificate, and stops nginx when the test ends.
func startNginx(t *testing.T, listen, upstream string) *x509.CertPool {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s}
`, dir, nginxServerBlock(listen, "127.0.0.1", certFile, keyFile, upstream))
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	errLog := filepath.Join(dir, "error.log")
	showLog := func() string { b, _ := os.ReadFile(errLog); return string(b) }
	if out, err := exec.Command(nginxPath, "-t", "-p", dir, "-c", confFile, "-e", errLog).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf)
	}
	cmd := exec.Command(nginxPath, "-p", dir, "-c", confFile, "-e", errLog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful: finish what is in flight
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("nginx error log:\n%s", showLog())
		}
	})
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return pool
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, showLog())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v\n%s", listen, err, showLog())
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "ikabud panel test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
