package fakebackend_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
)

func spec(t *testing.T, id string, in procmgr.SpecInput) procmgr.Spec {
	t.Helper()
	s, err := procmgr.ParseSpec(id, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func next(t *testing.T, ch <-chan procmgr.Event) procmgr.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return procmgr.Event{}
}

func TestLifecycle(t *testing.T) {
	b := fakebackend.New(fakebackend.Options{})
	defer b.Close()
	events := subscribe(t, b)
	s := spec(t, "wp-a", procmgr.SpecInput{})

	st, err := b.Provision(ctx(t), s)
	if err != nil || st.State != procmgr.StateRunning || st.MainPID != fakebackend.FirstPID || st.Backend != "fake" {
		t.Fatalf("provision: %+v, %v", st, err)
	}
	if ev := next(t, events); ev.Status.State != procmgr.StateRunning || ev.Status.MainPID != st.MainPID {
		t.Errorf("provision event %+v", ev.Status)
	}
	// Provisioning the same spec again changes nothing and says nothing.
	if st2, _ := b.Provision(ctx(t), s); st2.MainPID != st.MainPID {
		t.Errorf("idempotent provision changed pid %d -> %d", st.MainPID, st2.MainPID)
	}
	// A changed spec keeps the process (graceful reload).
	s2 := spec(t, "wp-a", procmgr.SpecInput{MaxChildren: "9"})
	if st2, _ := b.Provision(ctx(t), s2); st2.MainPID != st.MainPID {
		t.Errorf("changed spec changed pid")
	}
	if ev := next(t, events); ev.Status.MainPID != st.MainPID {
		t.Errorf("changed spec event %+v", ev.Status)
	}

	stopped, err := b.Stop(ctx(t), "wp-a")
	if err != nil || stopped.State != procmgr.StateStopped || stopped.MainPID != 0 {
		t.Errorf("stop: %+v, %v", stopped, err)
	}
	next(t, events)
	if _, err := b.Stop(ctx(t), "wp-a"); err != nil {
		t.Errorf("stop of a stopped instance: %v", err)
	}
	if _, err := b.Reload(ctx(t), "wp-a"); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("reload of a stopped instance: %v", err)
	}
	if err := b.Kill(ctx(t), "wp-a", procmgr.SigTERM); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("kill of a stopped instance: %v", err)
	}
	started, err := b.Start(ctx(t), "wp-a")
	if err != nil || started.MainPID == 0 || started.MainPID == st.MainPID {
		t.Errorf("start: %+v, %v", started, err)
	}
	restarted, _ := b.Restart(ctx(t), "wp-a")
	if restarted.MainPID == started.MainPID {
		t.Errorf("restart kept pid")
	}
	lim := procmgr.Limits{MemoryMax: 1 << 30, CPUQuota: 50, TasksMax: 30}
	if st, err := b.SetLimits(ctx(t), "wp-a", lim); err != nil || st.Limits != lim || st.MainPID != restarted.MainPID {
		t.Errorf("set limits: %+v, %v", st, err)
	}
	if got, _ := b.Spec("wp-a"); got.Limits != lim || got.Pool.MaxChildren != 9 {
		t.Errorf("spec %+v", got)
	}
	if h, err := b.Health(ctx(t), "wp-a"); err != nil || !h.Healthy {
		t.Errorf("health: %+v, %v", h, err)
	}
	if err := b.Kill(ctx(t), "wp-a", procmgr.SigUSR2); err != nil {
		t.Errorf("kill: %v", err)
	}

	for _, err := range []error{
		func() error { _, err := b.Start(ctx(t), "nope"); return err }(),
		func() error { _, err := b.Stop(ctx(t), "nope"); return err }(),
		func() error { _, err := b.Status(ctx(t), "nope"); return err }(),
		func() error { _, err := b.Logs(ctx(t), "nope", 1); return err }(),
		b.Kill(ctx(t), "nope", procmgr.SigTERM),
	} {
		if !errors.Is(err, procmgr.ErrNotFound) {
			t.Errorf("call on an absent instance: %v, want ErrNotFound", err)
		}
	}

	if err := b.Deprovision(ctx(t), "wp-a", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Deprovision(ctx(t), "wp-a", true); err != nil {
		t.Errorf("deprovision of an absent instance: %v", err)
	}
	if b.Has("wp-a") || b.State("wp-a") != procmgr.StateAbsent {
		t.Errorf("still there after deprovision")
	}
	if n := b.CallsFor(fakebackend.OpProvision, "wp-a"); n != 3 {
		t.Errorf("provision calls %d, want 3", n)
	}
	if n := b.Calls(fakebackend.OpDeprovision); n != 2 {
		t.Errorf("deprovision calls %d, want 2", n)
	}
}

func TestHooks(t *testing.T) {
	b := fakebackend.New(fakebackend.Options{PHP: []procmgr.PHPVersion{"8.2", "8.3"}})
	defer b.Close()
	if php := b.InstalledPHP(); len(php) != 2 {
		t.Errorf("php %v", php)
	}
	s := spec(t, "wp-a", procmgr.SpecInput{})
	boom := errors.New("boom")
	b.FailNext(fakebackend.OpProvision, boom)
	if _, err := b.Provision(ctx(t), s); !errors.Is(err, boom) {
		t.Fatalf("failed provision: %v", err)
	}
	if b.Has("wp-a") {
		t.Errorf("a failed provision left the instance")
	}
	st, err := b.Provision(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	h := b.History()
	if len(h) != 2 || h[0].Err == nil || h[1].Err != nil || h[1].Spec.ID != "wp-a" {
		t.Errorf("history %+v", h)
	}

	events := subscribe(t, b)
	after, err := b.Crash("wp-a")
	if err != nil || after.MainPID == st.MainPID || after.Restarts != 1 || after.State != procmgr.StateRunning {
		t.Fatalf("crash: %+v, %v", after, err)
	}
	if ev := next(t, events); ev.Status.State != procmgr.StateCrashLooping || ev.Status.MainPID != 0 {
		t.Errorf("first crash event %+v", ev.Status)
	}
	if ev := next(t, events); ev.Status.MainPID != after.MainPID {
		t.Errorf("second crash event %+v", ev.Status)
	}
	failed, _ := b.CrashLoopEnd("wp-a")
	if failed.State != procmgr.StateFailed || failed.LastExit.Result != "start-limit-hit" {
		t.Errorf("crash loop end: %+v", failed)
	}
	next(t, events)
	if ev := next(t, events); ev.Status.State != procmgr.StateFailed {
		t.Errorf("crash loop end event %+v", ev.Status)
	}
	if _, err := b.Crash("wp-a"); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("crash of a failed instance: %v", err)
	}
	if _, err := b.Start(ctx(t), "wp-a"); err != nil {
		t.Fatal(err)
	}
	next(t, events)
	if _, err := b.StopExternally("wp-a"); err != nil || b.State("wp-a") != procmgr.StateStopped {
		t.Errorf("stop externally: %v", err)
	}
	next(t, events)
	b.Lose("wp-a")
	if ev := next(t, events); ev.Status.State != procmgr.StateAbsent || b.Has("wp-a") {
		t.Errorf("lose: %+v", ev.Status)
	}

	b.FailAlways(fakebackend.OpStatus, boom)
	for range 3 {
		if _, err := b.Status(ctx(t), "x"); !errors.Is(err, boom) {
			t.Errorf("status: %v", err)
		}
	}
	b.FailAlways(fakebackend.OpStatus, nil)
	if _, err := b.Status(ctx(t), "x"); !errors.Is(err, procmgr.ErrNotFound) {
		t.Errorf("status after clearing: %v", err)
	}
}

func TestHold(t *testing.T) {
	b := fakebackend.New(fakebackend.Options{})
	defer b.Close()
	entered, release := b.Hold(fakebackend.OpProvision)
	done := make(chan error, 1)
	go func() {
		_, err := b.Provision(ctx(t), spec(t, "wp-a", procmgr.SpecInput{}))
		done <- err
	}()
	if id := <-entered; id != "wp-a" {
		t.Errorf("entered %q", id)
	}
	if b.Has("wp-a") {
		t.Errorf("a held provision already acted")
	}
	release()
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.WaitState(ctx(t), "wp-a", procmgr.StateRunning); err != nil {
		t.Fatal(err)
	}

	// A held call ends with its context.
	_, release2 := b.Hold(fakebackend.OpStop)
	defer release2()
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Stop(c, "wp-a"); !errors.Is(err, context.Canceled) {
		t.Errorf("held stop with a cancelled context: %v", err)
	}
	// WaitCalls times out with a message.
	c2, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if err := b.WaitCalls(c2, fakebackend.OpRestart, "", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCalls: %v", err)
	}
}

func TestLogs(t *testing.T) {
	b := fakebackend.New(fakebackend.Options{})
	s := spec(t, "wp-a", procmgr.SpecInput{})
	b.Seed(s, procmgr.StateRunning)
	for i := range 5 {
		if err := b.AddLog("wp-a", fmt.Sprintf("line %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lines, err := b.Logs(ctx(t), "wp-a", 2)
	if err != nil || len(lines) != 2 || lines[0].Text != "line 3" || lines[1].Text != "line 4" {
		t.Errorf("logs: %+v, %v", lines, err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	ch, err := b.FollowLogs(fctx, "wp-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if l := <-ch; l.Text != "line 4" {
		t.Errorf("first followed line %q", l.Text)
	}
	b.AddLog("wp-a", "new")
	if l := <-ch; l.Text != "new" {
		t.Errorf("new line %q", l.Text)
	}
	if b.Followers() != 1 {
		t.Errorf("followers %d", b.Followers())
	}
	cancel()
	for range ch {
	}
	if err := b.WaitCalls(ctx(t), fakebackend.OpFollowLogs, "wp-a", 1); err != nil {
		t.Fatal(err)
	}
	// A follower of a removed instance is closed.
	ch2, _ := b.FollowLogs(context.Background(), "wp-a", 0)
	b.Deprovision(ctx(t), "wp-a", false)
	for range ch2 {
	}
	// Close ends everything.
	b.Seed(s, procmgr.StateRunning)
	ch3, _ := b.FollowLogs(context.Background(), "wp-a", 0)
	ev, _ := b.Subscribe(context.Background())
	b.Close()
	for range ch3 {
	}
	for range ev {
	}
}

// The fake is used from many goroutines at once (the service, the reconciler,
// tests); run it under -race.
func TestConcurrentUse(t *testing.T) {
	b := fakebackend.New(fakebackend.Options{})
	defer b.Close()
	events := subscribe(t, b)
	go func() {
		for range events {
		}
	}()
	var wg sync.WaitGroup
	for i := range 8 {
		id := procmgr.InstanceID(fmt.Sprintf("wp-%d", i))
		s := spec(t, string(id), procmgr.SpecInput{})
		wg.Go(func() {
			for range 50 {
				b.Provision(ctx(t), s)
				b.Crash(id)
				b.Stop(ctx(t), id)
				b.Start(ctx(t), id)
				b.AddLog(id, "x")
				b.List(ctx(t))
				b.Calls(fakebackend.OpStart)
			}
		})
	}
	wg.Wait()
	if n := b.Calls(fakebackend.OpProvision); n != 400 {
		t.Errorf("provision calls %d, want 400", n)
	}
	seen := map[int]bool{}
	list, _ := b.List(ctx(t))
	for _, st := range list {
		if st.State != procmgr.StateRunning || seen[st.MainPID] {
			t.Errorf("status %+v (pids must be unique)", st)
		}
		seen[st.MainPID] = true
	}
}

func subscribe(t *testing.T, b *fakebackend.Backend) <-chan procmgr.Event {
	t.Helper()
	ch, err := b.Subscribe(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestDropEventsMarksTheNextLost(t *testing.T) {
	b := fakebackend.New(fakebackend.Options{})
	defer b.Close()
	b.Seed(spec(t, "wp-a", procmgr.SpecInput{}), procmgr.StateRunning)
	events := subscribe(t, b)
	b.DropEvents(1)
	if _, err := b.StopExternally("wp-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(ctx(t), "wp-a"); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if !ev.Lost || ev.Status.State != procmgr.StateRunning {
		t.Errorf("first event after a dropped one: %+v lost=%v, want the start marked Lost", ev.Status.State, ev.Lost)
	}
	if _, err := b.Stop(ctx(t), "wp-a"); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Lost {
		t.Errorf("the mark outlived the gap: %+v", ev)
	}
}
