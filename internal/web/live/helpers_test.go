package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

// The principals of the tests, by the name the test server takes in ?who=.
var testPrincipals = map[string]auth.Principal{
	"admin":   {UserID: 1, Name: "admin", Role: auth.RoleAdmin},
	"admin2":  {UserID: 5, Name: "admin2", Role: auth.RoleAdmin},
	"support": {UserID: 2, Name: "support", Role: auth.RoleSupport},
	"alice":   {UserID: 3, Name: "alice", Role: auth.RoleCustomer},
	"bob":     {UserID: 4, Name: "bob", Role: auth.RoleCustomer},
	"root":    {UserID: 0, Name: "root", Role: auth.RoleAdmin},
	"svc":     {UserID: 0, Name: "svc", Role: auth.RoleAdmin},
}

var systemPrincipal = auth.Principal{Name: "live-test", Role: auth.RoleAdmin}

func uidp(n uint) *uint { return &n }

// view makes a ready instance view owned by owner (nil: nobody).
func view(id string, owner *uint, state procmgr.State, pid int) instances.View {
	return instances.View{
		ID: id, OwnerID: owner, CMS: "wordpress", PHP: "8.2", Desired: "running", Phase: instances.PhaseReady,
		Status: procmgr.Status{ID: procmgr.InstanceID(id), State: state, MainPID: pid, Backend: "fake"},
	}
}

// fakeSource stands in for the instances service: views in memory, a real
// procmgr.Fanout for the subscription, scripted log follows and probes.
type fakeSource struct {
	mu      sync.Mutex
	views   map[string]instances.View
	history map[string][]procmgr.LogLine
	follows map[string][]*fakeFollow
	calls   map[string]int
	subs    int
	fan     procmgr.Fanout[instances.View]
	// listHook, when set, runs in List for a non-system principal with
	// the result already taken.
	listHook func(p auth.Principal)
	health   func(id string) (procmgr.Health, error)
	// followFails makes the next FollowLogs calls of an instance fail, as
	// a backend does while the instance is still provisioning.
	followFails map[string]int
}

type fakeFollow struct {
	ctx  context.Context
	ch   chan procmgr.LogLine
	done bool
}

func newFakeSource() *fakeSource {
	return &fakeSource{views: map[string]instances.View{}, history: map[string][]procmgr.LogLine{},
		follows: map[string][]*fakeFollow{}, calls: map[string]int{}}
}

func (f *fakeSource) Subscribe(ctx context.Context) (<-chan instances.View, error) {
	f.mu.Lock()
	f.subs++
	f.mu.Unlock()
	return f.fan.Join(ctx)
}

func (f *fakeSource) List(ctx context.Context, p auth.Principal) []instances.View {
	f.mu.Lock()
	var out []instances.View
	for _, v := range f.views {
		if instances.CanSee(p, v) {
			out = append(out, v)
		}
	}
	hook := f.listHook
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if hook != nil && p != systemPrincipal {
		hook(p)
	}
	return out
}

func (f *fakeSource) FollowLogs(ctx context.Context, p auth.Principal, id string, n int) (<-chan procmgr.LogLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p != systemPrincipal {
		return nil, errors.New("follow not as the system principal")
	}
	f.calls[id]++
	if f.followFails[id] > 0 {
		f.followFails[id]--
		return nil, fmt.Errorf("instance %s: %w", id, instances.ErrNotFound)
	}
	ff := &fakeFollow{ctx: ctx, ch: make(chan procmgr.LogLine, 1<<15)}
	h := f.history[id]
	for _, l := range h[max(0, len(h)-n):] {
		ff.ch <- l
	}
	f.follows[id] = append(f.follows[id], ff)
	return ff.ch, nil
}

func (f *fakeSource) Health(ctx context.Context, p auth.Principal, id string) (procmgr.Health, error) {
	f.mu.Lock()
	fn := f.health
	f.mu.Unlock()
	if fn == nil {
		// Tests that are not about health get no health rows: the hub
		// ignores probes of instances the service does not know.
		return procmgr.Health{}, fmt.Errorf("no health in this test: %w", instances.ErrNotFound)
	}
	return fn(id)
}

// set stores v and publishes it, as the service does.
func (f *fakeSource) set(v instances.View) {
	f.mu.Lock()
	f.views[v.ID] = v
	f.mu.Unlock()
	f.fan.Publish(v)
}

// remove deletes id and publishes the "removed" view the service sends.
func (f *fakeSource) remove(id string) {
	f.mu.Lock()
	delete(f.views, id)
	f.mu.Unlock()
	f.fan.Publish(instances.View{ID: id, Phase: "removed", Status: procmgr.Status{ID: procmgr.InstanceID(id), State: procmgr.StateAbsent}})
}

func (f *fakeSource) get(id string) instances.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.views[id]
}

// emit appends a line to id's log and sends it to every open follow.
func (f *fakeSource) emit(id, text string) {
	l := procmgr.LogLine{At: time.Now(), Text: text}
	f.mu.Lock()
	f.history[id] = append(f.history[id], l)
	var open []*fakeFollow
	for _, ff := range f.follows[id] {
		if !ff.done {
			open = append(open, ff)
		}
	}
	f.mu.Unlock()
	// Only the test goroutine emits and ends streams, so none closes
	// while this sends.
	for _, ff := range open {
		select {
		case ff.ch <- l:
		case <-ff.ctx.Done():
		}
	}
}

// endStream closes id's open follow streams, as a backend whose reader died.
func (f *fakeSource) endStream(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ff := range f.follows[id] {
		if !ff.done {
			ff.done = true
			close(ff.ch)
		}
	}
}

func (f *fakeSource) followCalls(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func (f *fakeSource) lastFollow(id string) *fakeFollow {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.follows[id]
	if len(fs) == 0 {
		return nil
	}
	return fs[len(fs)-1]
}

// env is a running hub behind an httptest server whose /ws handler plays
// the web tier: ?who= names the principal, ?sid= the session.
type env struct {
	t      testing.TB
	src    *fakeSource
	hub    *Hub
	srv    *httptest.Server
	cancel context.CancelFunc
	runErr chan error
	mu     sync.Mutex
	serves []error // what Serve returned, in order
}

func newEnv(t testing.TB, src *fakeSource, opt Options) *env {
	t.Helper()
	checkLeaks(t)
	opt.System = systemPrincipal
	opt.CheckOrigin = func(r *http.Request) bool { return r.Header.Get("Origin") == "http://panel.test" }
	e := &env{t: t, src: src, hub: New(src, opt), runErr: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.runErr <- e.hub.Run(ctx) }()
	e.srv = httptest.NewServer(http.HandlerFunc(e.serveWS))
	t.Cleanup(e.stop)
	return e
}

func (e *env) serveWS(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, ok := testPrincipals[q.Get("who")]
	if !ok {
		http.Error(w, "who?", http.StatusUnauthorized)
		return
	}
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	err := e.hub.Serve(w, r, Viewer{Principal: p, SessionID: q.Get("sid")}, q.Get("instance"), Resume{Epoch: q.Get("epoch"), After: after})
	e.mu.Lock()
	e.serves = append(e.serves, err)
	e.mu.Unlock()
	switch {
	case errors.Is(err, ErrTooMany):
		http.Error(w, "too many sockets", http.StatusTooManyRequests)
	case errors.Is(err, ErrClosed):
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	}
}

// stop ends the hub and the server; Run must return.
func (e *env) stop() {
	e.cancel()
	select {
	case err := <-e.runErr:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.runErr <- err
	case <-time.After(20 * time.Second):
		e.t.Errorf("Run did not return")
	}
	e.srv.Close()
}

// wsClient is a browser: a goroutine reads every message into msgs.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
	msgs chan msg
	err  error // the read error, valid once msgs is closed
	// epoch is the log epoch of the last logs message linesUntil read.
	epoch string
}

// msg is any server message, decoded loosely.
type msg struct {
	Type    string          `json:"type"`
	Rows    []viewmodel.Row `json:"rows"`
	Row     *viewmodel.Row  `json:"row"`
	ID      string          `json:"id"`
	Epoch   string          `json:"epoch"`
	Lines   []wireLine      `json:"lines"`
	Count   int             `json:"count"`
	Reason  string          `json:"reason"`
	Samples []Sample        `json:"samples"`
	raw     []byte
}

func (e *env) url(query string) string {
	return "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws?" + query
}

// dial opens a socket; start says whether to begin reading now.
func (e *env) dial(query string) *wsClient {
	e.t.Helper()
	c, res, err := e.tryDial(query, nil)
	if err != nil {
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		e.t.Fatalf("dial %s: %v (status %d)", query, err, code)
	}
	c.start()
	return c
}

func (e *env) tryDial(query string, netDial func(ctx context.Context, network, addr string) (net.Conn, error)) (*wsClient, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: netDial}
	conn, res, err := d.Dial(e.url(query), http.Header{"Origin": {"http://panel.test"}})
	if err != nil {
		return nil, res, err
	}
	c := &wsClient{t: e.t, conn: conn, msgs: make(chan msg, 1<<16)}
	e.t.Cleanup(func() { conn.Close() })
	return c, res, nil
}

func (c *wsClient) start() {
	go func() {
		defer close(c.msgs)
		for {
			_, b, err := c.conn.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			var m msg
			if err := json.Unmarshal(b, &m); err != nil {
				c.err = fmt.Errorf("bad message %q: %w", b, err)
				return
			}
			m.raw = b
			c.msgs <- m
		}
	}()
}

// next returns the next message, failing the test after d.
func (c *wsClient) next(d time.Duration) msg {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("socket ended: %v", c.err)
		}
		return m
	case <-time.After(d):
		c.t.Fatalf("no message within %v", d)
	}
	return msg{}
}

// nextOf skips messages until one of type typ.
func (c *wsClient) nextOf(typ string, d time.Duration) msg {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := c.next(time.Until(deadline))
		if m.Type == typ {
			return m
		}
	}
}

// closed waits for the socket to end and returns its close code (-1 when
// it ended without a close frame).
func (c *wsClient) closed(d time.Duration) int {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-c.msgs:
			if ok {
				continue
			}
			var ce *websocket.CloseError
			if errors.As(c.err, &ce) {
				return ce.Code
			}
			return -1
		case <-deadline:
			c.t.Fatalf("socket still open after %v", d)
			return 0
		}
	}
}

// lines collects log lines until the last seq is want, with the skipped
// markers met on the way.
func (c *wsClient) linesUntil(want uint64, d time.Duration) (lines []wireLine, marks []msg) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := c.next(time.Until(deadline))
		switch m.Type {
		case "logs":
			c.epoch = m.Epoch
			lines = append(lines, m.Lines...)
			if len(m.Lines) > 0 && m.Lines[len(m.Lines)-1].Seq == want {
				return lines, marks
			}
		case "skipped":
			marks = append(marks, m)
		}
	}
}

// smallRecvBuf dials with a tiny receive buffer, so that a client that does
// not read pushes back on the server within a few MB.
func smallRecvBuf(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.DialContext(ctx, network, addr)
}

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkLeaks fails the test if goroutines started during it outlive it
// (after every other cleanup ran and a short settle).
func checkLeaks(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var now int
		if eventually(5*time.Second, func() bool { now = runtime.NumGoroutine(); return now <= before }) {
			return
		}
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines leaked: %d before, %d after\n%s", before, now, buf[:runtime.Stack(buf, true)])
	})
}

// settledGoroutines returns the goroutine count once it stopped changing
// (goroutines starting or ending in the background), waiting at most 2s.
func settledGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	eventually(2*time.Second, func() bool {
		m := runtime.NumGoroutine()
		if m == n {
			same++
		} else {
			n, same = m, 0
		}
		return same >= 5
	})
	return n
}

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
