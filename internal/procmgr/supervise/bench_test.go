package supervise_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// The figures of issue 3 for this backend, each with its p50 beside the
// mean: create until ping p50 <= 60 ms, kill -9 until a subscriber has the
// event p50 <= 5 ms, crash until the new master answers p50 <= 100 ms.

// BenchmarkCreateUntilPing provisions a new instance (user, tree, config,
// cgroups, master) until Provision returns, which is after the first pong.
func BenchmarkCreateUntilPing(b *testing.B) {
	_, opt := setup(b)
	s := newSession(b, opt)
	ctx := ctxFor(b)
	var ds []time.Duration
	for b.Loop() {
		spec := procmgrtest.MustSpec(b, procmgrtest.NewID("bc"), procmgr.SpecInput{})
		t0 := time.Now()
		if _, err := s.b.Provision(ctx, spec); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		b.StopTimer()
		if err := s.b.Deprovision(ctx, spec.ID, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(ds, 0.9)), "p90-ms")
}

// crashBench kills the master with SIGKILL b.N times and measures until
// done says an event completes the figure. Between rounds a person's
// restart resets the start limit (five starts in ten seconds), outside the
// timer, so every round is a first crash.
func crashBench(b *testing.B, done func(ctx context.Context, ev procmgr.Event, oldPID int, l procmgr.Layout) bool) {
	l, opt := setup(b)
	s := newSession(b, opt)
	spec, st := provision(b, s, "bk", procmgr.SpecInput{})
	ctx := ctxFor(b)
	events, err := s.b.Subscribe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pid := st.MainPID
	var ds []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
	wait:
		for {
			select {
			case ev := <-events:
				if ev.Status.ID == spec.ID && done(ctx, ev, pid, l) {
					break wait
				}
			case <-time.After(5 * time.Second):
				b.Fatalf("no event within 5s of kill -9 of %d", pid)
			}
		}
		ds = append(ds, time.Since(t0))
		b.StopTimer()
		st, err := s.b.Restart(ctx, spec.ID)
		if err != nil {
			b.Fatal(err)
		}
		pid = st.MainPID
		for len(events) > 0 {
			<-events
		}
		b.StartTimer()
	}
	b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(ds, 0.9)), "p90-ms")
}

// BenchmarkKillToEvent: kill -9 of the master until a subscriber receives
// the event that says it is down.
func BenchmarkKillToEvent(b *testing.B) {
	crashBench(b, func(_ context.Context, ev procmgr.Event, old int, _ procmgr.Layout) bool {
		return ev.Status.MainPID != old || ev.Status.State != procmgr.StateRunning
	})
}

// BenchmarkCrashRestartUntilPing: kill -9 of the master until the new
// master is running and answers a ping.
func BenchmarkCrashRestartUntilPing(b *testing.B) {
	crashBench(b, func(ctx context.Context, ev procmgr.Event, old int, l procmgr.Layout) bool {
		if ev.Status.State != procmgr.StateRunning || ev.Status.MainPID == old || ev.Status.MainPID == 0 {
			return false
		}
		if err := procmgr.Ping(ctx, l.SocketPath(ev.Status.ID)); err != nil {
			b.Fatalf("running but no pong: %v", err)
		}
		return true
	})
}
