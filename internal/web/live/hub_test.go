package live

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

const wait = 5 * time.Second

func rowOf(t *testing.T, m msg, id string) viewmodel.Row {
	t.Helper()
	if m.Type != "row" || m.Row == nil || m.Row.ID != id {
		t.Fatalf("want a row of %s, got %s", id, m.raw)
	}
	return *m.Row
}

// A change published while a socket connects (between its registration and
// its snapshot) reaches it after the snapshot.
func TestSnapshotThenChangesNothingLost(t *testing.T) {
	src := newFakeSource()
	src.set(view("a1", nil, procmgr.StateRunning, 100))
	e := newEnv(t, src, Options{})
	watcher := e.dial("who=admin")
	if m := watcher.next(wait); m.Type != "snapshot" || len(m.Rows) != 1 {
		t.Fatalf("watcher snapshot: %s", m.raw)
	}

	var once atomic.Bool
	src.mu.Lock()
	src.listHook = func(p auth.Principal) {
		if p.Name != "admin2" || !once.CompareAndSwap(false, true) {
			return
		}
		// The snapshot is already taken (restarts 0); now the change,
		// and wait until the hub has fanned it out.
		v := src.get("a1")
		v.Status.Restarts = 7
		src.set(v)
		select {
		case m := <-watcher.msgs:
			if m.Row == nil || m.Row.Restarts != 7 {
				t.Errorf("watcher got %s", m.raw)
			}
		case <-time.After(wait):
			t.Errorf("the watcher never got the change")
		}
	}
	src.mu.Unlock()

	c := e.dial("who=admin2")
	snap := c.next(wait)
	if snap.Type != "snapshot" || len(snap.Rows) != 1 || snap.Rows[0].Restarts != 0 {
		t.Fatalf("snapshot: %s", snap.raw)
	}
	if r := rowOf(t, c.next(wait), "a1"); r.Restarts != 7 {
		t.Fatalf("the change made during connect was lost: restarts %d", r.Restarts)
	}
}

// Each viewer gets the row its role allows, built once per role variant; a
// customer hears nothing of another's instance.
func TestRoleVariants(t *testing.T) {
	src := newFakeSource()
	alice, bob := testPrincipals["alice"].UserID, testPrincipals["bob"].UserID
	src.set(view("a1", uidp(alice), procmgr.StateStopped, 0))
	src.set(view("b1", uidp(bob), procmgr.StateStopped, 0))
	e := newEnv(t, src, Options{})
	socks := map[string]*wsClient{}
	for who, n := range map[string]int{"admin": 2, "admin2": 2, "support": 2, "alice": 1, "bob": 1} {
		socks[who] = e.dial("who=" + who)
		if m := socks[who].next(wait); m.Type != "snapshot" || len(m.Rows) != n {
			t.Fatalf("%s snapshot: %s", who, m.raw)
		}
	}
	built := e.hub.rowsBuilt.Load()

	v := src.get("a1")
	v.Status.Restarts = 1
	src.set(v)
	for who, want := range map[string][2]bool{"admin": {true, true}, "admin2": {true, true}, "support": {false, false}, "alice": {true, false}} {
		r := rowOf(t, socks[who].next(wait), "a1")
		if r.CanStart != want[0] || r.CanManage != want[1] || r.Restarts != 1 {
			t.Errorf("%s: can_start %v can_manage %v restarts %d, want %v %v 1", who, r.CanStart, r.CanManage, r.Restarts, want[0], want[1])
		}
	}
	// Bob's next message must be his own instance's change: nothing of
	// a1 (neither row nor gone) came before it.
	v = src.get("b1")
	v.Status.Restarts = 2
	src.set(v)
	if r := rowOf(t, socks["bob"].next(wait), "b1"); !r.CanStart || r.CanManage {
		t.Errorf("bob's own row: %+v", r)
	}
	for _, who := range []string{"admin", "admin2", "support"} {
		rowOf(t, socks[who].next(wait), "b1")
	}
	// a1: admin, support, owner; b1 the same: three variants each, not
	// one per socket (seven sockets).
	if n := e.hub.rowsBuilt.Load() - built; n != 6 {
		t.Errorf("rows built for two changes: %d, want 6 (3 role variants each)", n)
	}
}

// A removed instance, or one that changed owner, is gone for whoever saw
// it, and an instance socket on it is closed.
func TestGone(t *testing.T) {
	src := newFakeSource()
	alice, bob := testPrincipals["alice"].UserID, testPrincipals["bob"].UserID
	src.set(view("a1", uidp(alice), procmgr.StateRunning, 10))
	src.set(view("a2", uidp(alice), procmgr.StateRunning, 11))
	src.set(view("b1", uidp(bob), procmgr.StateRunning, 12))
	e := newEnv(t, src, Options{})
	admin, a, b := e.dial("who=admin"), e.dial("who=alice"), e.dial("who=bob")
	a2page := e.dial("who=alice&instance=a2")
	for _, c := range []*wsClient{admin, a, b} {
		c.nextOf("snapshot", wait)
	}
	a2page.nextOf("snapshot", wait)

	src.remove("a1")
	for name, c := range map[string]*wsClient{"admin": admin, "alice": a} {
		if m := c.next(wait); m.Type != "gone" || m.ID != "a1" {
			t.Fatalf("%s: want gone a1, got %s", name, m.raw)
		}
	}
	// Owner change: a2 goes from alice to bob.
	v := src.get("a2")
	v.OwnerID = uidp(bob)
	src.set(v)
	if m := a.next(wait); m.Type != "gone" || m.ID != "a2" {
		t.Fatalf("alice: want gone a2, got %s", m.raw)
	}
	// Bob heard nothing of a1's removal: his first message is a2's row.
	if r := rowOf(t, b.next(wait), "a2"); !r.CanStart && !r.CanStop {
		t.Errorf("bob may power a2 now: %+v", r)
	}
	if r := rowOf(t, admin.next(wait), "a2"); !r.CanManage {
		t.Errorf("admin row: %+v", r)
	}
	if m := a2page.nextOf("gone", wait); m.ID != "a2" {
		t.Fatalf("instance page: %s", m.raw)
	}
	if code := a2page.closed(wait); code != CloseInstanceGone {
		t.Errorf("instance page closed with %d, want 4404", code)
	}
	if e.hub.History("a1") != nil {
		t.Errorf("tracker kept a removed instance's history")
	}
}

// A user may hold MaxPerUser sockets; root (UserID 0) counts by name.
func TestPerUserCap(t *testing.T) {
	src := newFakeSource()
	e := newEnv(t, src, Options{MaxPerUser: 2})
	first := e.dial("who=alice")
	e.dial("who=alice")
	if _, res, err := e.tryDial("who=alice", nil); err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third socket of alice: err %v, response %v; want 429", err, res)
	}
	e.dial("who=bob")
	e.dial("who=root")
	e.dial("who=root")
	if _, res, err := e.tryDial("who=root", nil); err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third socket of root: err %v; want 429", err)
	}
	e.dial("who=svc") // another UserID 0 name: its own count

	first.conn.Close()
	if !eventually(wait, func() bool {
		c, _, err := e.tryDial("who=alice", nil)
		if err == nil {
			c.conn.Close()
		}
		return err == nil
	}) {
		t.Fatal("alice's closed socket still counts")
	}
}

// CloseSession and CloseUser end sockets with 4401; others stay.
func TestCloseUserAndSession(t *testing.T) {
	src := newFakeSource()
	src.set(view("x", nil, procmgr.StateRunning, 10))
	e := newEnv(t, src, Options{})
	s1, s2 := e.dial("who=admin&sid=s1"), e.dial("who=admin&sid=s2")
	other := e.dial("who=support&sid=s3")
	for _, c := range []*wsClient{s1, s2, other} {
		c.nextOf("snapshot", wait)
	}
	e.hub.CloseSession("s1")
	if code := s1.closed(wait); code != CloseSessionEnded {
		t.Fatalf("session socket closed with %d, want 4401", code)
	}
	v := src.get("x")
	v.Status.Restarts = 3
	src.set(v)
	rowOf(t, s2.next(wait), "x")

	e.hub.CloseUser(testPrincipals["admin"].UserID)
	if code := s2.closed(wait); code != CloseSessionEnded {
		t.Fatalf("user socket closed with %d, want 4401", code)
	}
	rowOf(t, other.next(wait), "x")
}

// The end of Run closes every socket with 1012 and refuses new ones.
func TestRunEndCloses1012(t *testing.T) {
	src := newFakeSource()
	src.set(view("x", nil, procmgr.StateRunning, 10))
	e := newEnv(t, src, Options{})
	socks := []*wsClient{e.dial("who=admin"), e.dial("who=support"), e.dial("who=admin&instance=x")}
	for _, c := range socks {
		c.nextOf("snapshot", wait)
	}
	e.cancel()
	for i, c := range socks {
		if code := c.closed(wait); code != CloseServiceRestart {
			t.Errorf("socket %d closed with %d, want 1012", i, code)
		}
	}
	select {
	case err := <-e.runErr:
		e.runErr <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	if _, res, err := e.tryDial("who=admin", nil); err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Run: %v; want 503", err)
	}
}

// A session found invalid at a ping period is closed with 4401.
func TestStillValidFalseCloses(t *testing.T) {
	src := newFakeSource()
	var valid atomic.Bool
	valid.Store(true)
	var asked atomic.Int32
	e := newEnv(t, src, Options{PingPeriod: 20 * time.Millisecond, StillValid: func(_ context.Context, v Viewer) bool {
		if v.SessionID == "s1" {
			asked.Add(1)
		}
		return valid.Load() || v.SessionID != "s1"
	}})
	c := e.dial("who=alice&sid=s1")
	c.nextOf("snapshot", wait)
	if !eventually(wait, func() bool { return asked.Load() >= 2 }) {
		t.Fatal("StillValid not asked at the ping period")
	}
	valid.Store(false)
	if code := c.closed(wait); code != CloseSessionEnded {
		t.Fatalf("closed with %d, want 4401", code)
	}
}

// Pings come every PingPeriod.
func TestPingSent(t *testing.T) {
	e := newEnv(t, newFakeSource(), Options{PingPeriod: 20 * time.Millisecond, PongWait: 300 * time.Millisecond})
	c, _, err := e.tryDial("who=admin", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pings atomic.Int32
	c.conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	c.start()
	// 20 pings take 400ms or more: past PongWait, so the socket stays
	// open only because the answered pings extend its read deadline.
	if !eventually(wait, func() bool { return pings.Load() >= 20 }) {
		t.Fatalf("%d pings", pings.Load())
	}
	if m := c.next(wait); m.Type != "snapshot" {
		t.Fatalf("first message %s", m.raw)
	}
	select {
	case _, ok := <-c.msgs:
		if !ok {
			t.Fatalf("socket ended: %v", c.err)
		}
	default:
	}
}

// A client frame over ReadLimit closes the socket; a small one is ignored.
func TestReadLimit(t *testing.T) {
	src := newFakeSource()
	src.set(view("x", nil, procmgr.StateRunning, 10))
	e := newEnv(t, src, Options{ReadLimit: 128})
	c := e.dial("who=admin")
	c.nextOf("snapshot", wait)
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(`{"action":"stop"}`)); err != nil {
		t.Fatal(err)
	}
	v := src.get("x")
	v.Status.Restarts = 1
	src.set(v)
	rowOf(t, c.next(wait), "x")
	if err := c.conn.WriteMessage(websocket.TextMessage, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if code := c.closed(wait); code != websocket.CloseMessageTooBig {
		t.Fatalf("closed with %d, want 1009", code)
	}
}

// The tracker's CPU rate, samples and health probes reach the rows, the
// instance page and Extra/History; a removed instance's state is dropped.
func TestUsageAndHealth(t *testing.T) {
	src := newFakeSource()
	clk := &clock{t: time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)}
	probed := make(chan string, 10)
	src.health = func(id string) (procmgr.Health, error) {
		probed <- id
		return procmgr.Health{Healthy: true, PingLatency: 300 * time.Microsecond, CheckedAt: time.Now()}, nil
	}
	src.set(view("x", nil, procmgr.StateStopped, 0))
	e := newEnv(t, src, Options{Now: clk.now, HealthEvery: time.Hour})
	dash := e.dial("who=admin")
	page := e.dial("who=support&instance=x")
	dash.nextOf("snapshot", wait)
	if m := page.nextOf("usage", wait); len(m.Samples) != 0 {
		t.Fatalf("history of a stopped instance: %s", m.raw)
	}

	v := view("x", nil, procmgr.StateRunning, 42)
	v.Status.MemoryBytes, v.Status.CPUUsage = 8<<20, 2*time.Second
	src.set(v)
	// Becoming running triggers a probe at once (HealthEvery is an hour).
	select {
	case id := <-probed:
		if id != "x" {
			t.Fatalf("probed %s", id)
		}
	case <-time.After(wait):
		t.Fatal("no probe after the instance started")
	}
	if m := page.nextOf("usage", wait); len(m.Samples) != 1 || m.Samples[0].Mem != 8<<20 || m.Samples[0].CPU != -1 {
		t.Fatalf("first sample: %s", m.raw)
	}
	deadline := time.Now().Add(wait)
	for {
		r := rowOf(t, dash.next(time.Until(deadline)), "x")
		if r.HealthWord == "healthy" {
			break
		}
	}
	clk.add(10 * time.Second)
	v.Status.CPUUsage = 7 * time.Second // 5 s of CPU in 10 s: 50%
	src.set(v)
	if r := rowOf(t, dash.next(wait), "x"); r.CPUText != "50.0%" || r.HealthWord != "healthy" {
		t.Fatalf("row after 10 s: cpu %q health %q", r.CPUText, r.HealthWord)
	}
	if m := page.nextOf("usage", wait); len(m.Samples) != 1 || m.Samples[0].CPU != 50 {
		t.Fatalf("second sample: %s", m.raw)
	}
	if x := e.hub.Extra("x"); x.CPUPercent != 50 || !x.Health.Healthy {
		t.Fatalf("Extra: %+v", x)
	}
	// Another view in the same 5 s slot makes no sample.
	clk.add(time.Second)
	src.set(v)
	rowOf(t, dash.next(wait), "x")
	if h := e.hub.History("x"); len(h) != 2 || h[0].At >= h[1].At {
		t.Fatalf("history: %+v", h)
	}
	// A probe the instance page made as it rendered is taken as it is:
	// its row goes out with it, and the hub does not probe again.
	e.hub.NoteHealth("x", procmgr.Health{Reason: "ping: timeout after 1s", CheckedAt: time.Now()})
	for {
		r := rowOf(t, dash.next(wait), "x")
		if r.HealthWord == "unhealthy" && r.HealthText == "ping: timeout after 1s" {
			break
		}
	}
	e.dial("who=admin&instance=x")
	select {
	case id := <-probed:
		t.Fatalf("the hub probed %s again when its page opened", id)
	case <-time.After(100 * time.Millisecond):
	}
	src.remove("x")
	dash.nextOf("gone", wait)
	if !eventually(wait, func() bool { return e.hub.History("x") == nil && e.hub.Extra("x").CPUPercent == -1 }) {
		t.Fatal("a removed instance's usage is kept")
	}
}

// When the hub's subscription dropped views (the next one comes marked
// Lost), the hub lists every instance again: a change and a removal it
// never heard of reach the sockets, and an instance that did not change
// sends nothing.
func TestLostViewsAreReadAgain(t *testing.T) {
	src := newFakeSource()
	src.set(view("s1", nil, procmgr.StateRunning, 10))
	src.set(view("s2", nil, procmgr.StateRunning, 11))
	src.set(view("s15", nil, procmgr.StateRunning, 12))
	e := newEnv(t, src, Options{})
	admin := e.dial("who=admin")
	admin.nextOf("snapshot", wait)

	// Changed and removed behind the subscription's back, as dropped
	// views would leave them; then a view marked Lost arrives.
	src.mu.Lock()
	v := src.views["s1"]
	v.Status.State, v.Status.MainPID = procmgr.StateStopped, 0
	src.views["s1"] = v
	delete(src.views, "s2")
	src.mu.Unlock()
	src.fan.Publish(instances.View{ID: "s1", Lost: true})

	got := map[string]string{}
	for len(got) < 2 {
		m := admin.next(wait)
		switch m.Type {
		case "row":
			if m.Row.ID == "s15" {
				t.Errorf("the unchanged s15 was sent again")
			}
			got[m.Row.ID] = m.Row.State
		case "gone":
			got[m.ID] = "gone"
		}
	}
	if got["s1"] != string(procmgr.StateStopped) || got["s2"] != "gone" {
		t.Fatalf("after lost views the dashboard got %v, want s1 stopped and s2 gone", got)
	}
}
