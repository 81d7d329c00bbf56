package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
	"github.com/ikabud/panel/internal/web"
)

const waitTimeout = 15 * time.Second

// webEnv is the real server over the real instances service and a real
// database, with the fake backend under it, served on a real Unix socket.
type webEnv struct {
	t      *testing.T
	db     *store.DB
	fb     *fakebackend.Backend
	svc    *instances.Service
	srv    *web.Server
	client *http.Client
	base   string
	stop   func() // stops serving the Unix socket
}

// newWebEnv serves the API on a Unix socket in t.TempDir(). principals nil
// means the real auth service, which maps uid 0 (the test runs as root) to
// an admin.
func newWebEnv(t *testing.T, principals web.Principals) *webEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("these tests authenticate over the Unix socket as uid 0: run them as root")
	}
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	log := procmgrtest.Logger(t, slog.LevelDebug)
	svc := instances.New(db, fb, instances.Options{Layout: procmgr.DefaultLayout(), Log: log})
	if principals == nil {
		principals = auth.NewService(db, log)
	}
	srv, err := web.New(web.Options{Instances: svc, Principals: principals, Log: log, Version: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	e := &webEnv{t: t, db: db, fb: fb, svc: svc, srv: srv}

	sock := filepath.Join(t.TempDir(), "panel.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	e.stop = e.serve(ln)
	e.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	t.Cleanup(e.client.CloseIdleConnections)
	e.base = "http://panel"
	return e
}

// serve runs srv.Serve on ln until stop is called or the test ends, and
// checks it returns nil.
func (e *webEnv) serve(ln net.Listener) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Serve: %v", err)
				}
			case <-time.After(waitTimeout):
				e.t.Errorf("Serve did not return after its context ended")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return http.StatusText(r.status) + ": " + string(r.body) }

// errorBody decodes the body as the API's error JSON.
func (r response) errorBody(t *testing.T) web.ErrorBody {
	t.Helper()
	var eb web.ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if eb.Error == "" {
		t.Errorf("error body %q has no message", r.body)
	}
	return eb
}

// do sends a request. body is sent as is if it is a string or []byte,
// otherwise as JSON; nil sends no body.
func (e *webEnv) do(method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	return e.doReader(method, path, rd)
}

func (e *webEnv) doReader(method, path string, rd io.Reader) response {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

// want checks the status and decodes the JSON body into v (if not nil).
func (e *webEnv) want(r response, status int, v any) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if v != nil {
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			e.t.Errorf("content type %q, want JSON", ct)
		}
		if err := json.Unmarshal(r.body, v); err != nil {
			e.t.Fatalf("body %q: %v", r.body, err)
		}
	}
}

// create makes an instance through the service directly.
func (e *webEnv) create(id string, owner *uint) instances.View {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	v, err := e.svc.Create(ctx, auth.Principal{Name: "root", Role: auth.RoleAdmin}, instances.CreateRequest{ID: id, OwnerID: owner})
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return v
}

func (e *webEnv) user(name string, role auth.Role) auth.Principal {
	e.t.Helper()
	u := &store.User{Name: name, Role: string(role)}
	if err := e.db.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return auth.Principal{UserID: u.ID, Name: name, Role: role}
}

// stubPrincipals maps every uid to one principal (or error) and records the
// uids it was asked about.
type stubPrincipals struct {
	mu   sync.Mutex
	p    auth.Principal
	err  error
	uids []int
}

func (s *stubPrincipals) PrincipalForUID(_ context.Context, uid int) (auth.Principal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uids = append(s.uids, uid)
	return s.p, s.err
}

func (s *stubPrincipals) set(p auth.Principal, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p, s.err = p, err
}

func (s *stubPrincipals) seen() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.uids...)
}
