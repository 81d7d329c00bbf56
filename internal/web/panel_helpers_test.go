package web_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
	"github.com/ikabud/panel/internal/web"
	"github.com/ikabud/panel/internal/web/live"
)

// panelEnv is the whole web panel as `panel serve` wires it (real database,
// real accounts, the live hub, the instances service running), over the
// fake backend, served on a real TCP port.
type panelEnv struct {
	t    testing.TB
	db   *store.DB
	fb   *fakebackend.Backend
	svc  *instances.Service
	acc  *auth.Service
	hub  *live.Hub
	srv  *web.Server
	base string // http://127.0.0.1:PORT
	// Users made by newPanelEnv, all with password "password-123".
	admin, support, alice, bob auth.UserView
}

const testPassword = "password-123"

func newPanelEnv(t *testing.T) *panelEnv {
	return newPanelEnvWith(t, nil)
}

func newPanelEnvB(b *testing.B) *panelEnv { return newPanelEnvWith(b, nil) }

func netipLoopback() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

// newPanelEnvWith lets a test change the hub's options (short ping periods).
func newPanelEnvWith(t testing.TB, tweak func(*live.Options)) *panelEnv {
	t.Helper()
	return newPanelEnvFront(t, tweak, nil)
}

// newPanelEnvFront is newPanelEnvWith with a front door (nil: none).
func newPanelEnvFront(t testing.TB, tweak func(*live.Options), front instances.FrontDoor) *panelEnv {
	t.Helper()
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := wirePanel(t, db, fb, procmgrtest.Logger(t, slog.LevelDebug), web.Options{ListenAddr: ln.Addr().String()}, tweak, front)
	t.Cleanup(p.run(t, func(ctx context.Context) error { return p.srv.Serve(ctx, ln) }))
	e := &panelEnv{t: t, db: db, fb: fb, svc: p.svc, acc: p.acc, hub: p.hub, srv: p.srv, base: "http://" + ln.Addr().String()}
	e.addUsers()
	return e
}

// panelParts is the web panel as `panel serve` wires it: the instances
// service over the (fake) host, the accounts, the web server and its hub.
type panelParts struct {
	svc *instances.Service
	acc *auth.Service
	srv *web.Server
	hub *live.Hub
}

// wirePanel wires a panel over db and fb with the web options given (the
// services are filled in) and the hub's options changed by tweak; run starts it.
func wirePanel(t testing.TB, db *store.DB, fb *fakebackend.Backend, log *slog.Logger, wopt web.Options, tweak func(*live.Options), front instances.FrontDoor) panelParts {
	t.Helper()
	svc := instances.New(db, fb, instances.Options{Layout: procmgr.DefaultLayout(), Log: log, FrontDoor: front})
	acc := auth.NewServiceWith(db, log, auth.Options{Argon2: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}})
	wopt.Instances, wopt.Accounts, wopt.Log, wopt.Version = svc, acc, log, "test-1"
	srv, err := web.New(wopt)
	if err != nil {
		t.Fatal(err)
	}
	opt := live.Options{Log: log, System: auth.Principal{Name: "panel", Role: auth.RoleAdmin}, CheckOrigin: srv.CheckOrigin,
		StillValid: func(ctx context.Context, v live.Viewer) bool { return acc.SessionValid(ctx, v.SessionID) }}
	if tweak != nil {
		tweak(&opt)
	}
	hub := live.New(svc, opt)
	srv.SetLive(hub)
	return panelParts{svc: svc, acc: acc, srv: srv, hub: hub}
}

// run starts the panel's service, hub, revocation watch and serve, as
// `panel serve` does, and returns once the service has loaded; stop ends
// them all and waits.
func (p panelParts) run(t testing.TB, serve func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 4)
	go func() { done <- p.svc.Run(ctx) }()
	go func() { done <- p.srv.WatchRevocations(ctx) }()
	go func() { done <- p.hub.Run(ctx) }()
	go func() { done <- serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			for range 4 {
				select {
				case err := <-done:
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("panel: %v", err)
					}
				case <-time.After(waitTimeout):
					t.Errorf("panel did not stop")
					return
				}
			}
		})
	}
	<-p.svc.Started()
	return stop
}

// addUsers makes ann (admin), sam (support), alice and bob (customers).
func (e *panelEnv) addUsers() {
	e.t.Helper()
	mk := func(name string, role auth.Role) auth.UserView {
		u, err := e.acc.CreateUser(context.Background(), rootPrincipal(), name, role, testPassword)
		if err != nil {
			e.t.Fatal(err)
		}
		return u
	}
	e.admin, e.support, e.alice, e.bob = mk("ann", auth.RoleAdmin), mk("sam", auth.RoleSupport), mk("alice", auth.RoleCustomer), mk("bob", auth.RoleCustomer)
}

// mkInstance creates an instance owned by owner (nil: nobody), running.
func (e *panelEnv) mkInstance(id string, owner *auth.UserView) instances.View {
	e.t.Helper()
	req := instances.CreateRequest{ID: id}
	if owner != nil {
		uid := owner.ID
		req.OwnerID = &uid
	}
	v, err := e.svc.Create(context.Background(), auth.Principal{Name: "root", Role: auth.RoleAdmin}, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// browser is one person's browser: a cookie jar, the panel's Origin on
// every request as a browser sends it, and no redirects followed.
type browser struct {
	e      *panelEnv
	c      *http.Client
	csrf   string
	origin string
}

func (e *panelEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, origin: e.base, c: &http.Client{Jar: jar, Timeout: waitTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// login signs in and keeps the session's CSRF token from the dashboard.
func (e *panelEnv) login(name string) *browser {
	e.t.Helper()
	b := e.browser()
	r := b.postForm("/login", url.Values{"username": {name}, "password": {testPassword}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		e.t.Fatalf("login %s: %s", name, r)
	}
	b.loadCSRF()
	return b
}

var csrfRe = regexp.MustCompile(`data-csrf="([^"]+)"`)

func (b *browser) loadCSRF() {
	b.e.t.Helper()
	r := b.get("/")
	m := csrfRe.FindSubmatch(r.body)
	if r.status != http.StatusOK || m == nil {
		b.e.t.Fatalf("no CSRF token on the dashboard: %s", r)
	}
	b.csrf = string(m[1])
}

func (b *browser) do(req *http.Request) response {
	b.e.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: body}
}

func (b *browser) get(path string) response {
	req, _ := http.NewRequest("GET", b.e.base+path, nil)
	return b.do(req)
}

// postForm posts a form as the page would: with the session's CSRF token
// (when it has one) and the panel's Origin.
func (b *browser) postForm(path string, form url.Values) response {
	if b.csrf != "" && form.Get("_csrf") == "" {
		form.Set("_csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	return b.do(req)
}

// dialWS opens /ws as this browser, with the given Origin ("" sends none).
func (b *browser) dialWS(query, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	u, _ := url.Parse(b.e.base)
	for _, ck := range b.c.Jar.Cookies(u) {
		h.Add("Cookie", ck.Name+"="+ck.Value)
	}
	d := websocket.Dialer{HandshakeTimeout: waitTimeout}
	return d.Dial("ws://"+u.Host+"/ws"+query, h)
}

// readUntil reads JSON messages from a socket until ok accepts one.
func readUntil(t *testing.T, c *websocket.Conn, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(m) {
			return m
		}
	}
}

// rowOf returns the row of a "row" message, or of a "snapshot" holding id.
func rowOf(m map[string]any, id string) map[string]any {
	switch m["type"] {
	case "row":
		r, _ := m["row"].(map[string]any)
		if r["id"] == id {
			return r
		}
	case "snapshot":
		rows, _ := m["rows"].([]any)
		for _, x := range rows {
			if r, _ := x.(map[string]any); r["id"] == id {
				return r
			}
		}
	}
	return nil
}

func (e *panelEnv) auditHas(instance, actor, action, result string) bool {
	e.t.Helper()
	// Refusals are recorded without making the refused request wait.
	if err := e.svc.WaitIdle(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	evs, err := e.db.FindAudit(context.Background(), store.AuditFilter{InstanceID: instance, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Actor == actor && ev.Action == action && ev.Result == result {
			return true
		}
	}
	return false
}

func rootPrincipal() auth.Principal { return auth.Principal{Name: "root", Role: auth.RoleAdmin} }

func regexpFind(expr, s string) string {
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

func deadline() time.Time { return time.Now().Add(waitTimeout) }

func itoa(n uint) string { return strconv.FormatUint(uint64(n), 10) }

func aliceP(e *panelEnv) auth.Principal {
	return auth.Principal{UserID: e.alice.ID, Name: "alice", Role: auth.RoleCustomer}
}
