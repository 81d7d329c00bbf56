package supervise_test

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// The figures of this backend, each with its p50 and the p50 of its floor
// measured in the same run, and their ratio: create until ping (floor:
// php-fpm started directly with the same config), kill -9 until a
// subscriber has the event (floor: a killed child until its parent's wait
// returns), a crash until the new master answers, for a first crash and for
// a second one within the restart window.

// BenchmarkCreateUntilPing provisions a new instance (user, tree, config,
// cgroups, master) until Provision returns, which is after the first pong.
// Its floor: an account made with useradd and gpasswd, plus the php-fpm
// master of an instance provisioned before, started by hand as its user
// until its socket answers.
func BenchmarkCreateUntilPing(b *testing.B) {
	l, opt := setup(b)
	s := newSession(b, opt)
	ctx := ctxFor(b)
	floorSpec, _ := provision(b, s, "bf", procmgr.SpecInput{})
	if _, err := s.b.Stop(ctx, floorSpec.ID); err != nil {
		b.Fatal(err)
	}
	var ds, floor []time.Duration
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
		acct, err := procmgrtest.TimeAccountCreation(l.WebUser, "iktfloor"+procmgrtest.RandomHex(6))
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		m, err := procmgrtest.StartMasterDirectly(l, floorSpec.ID)
		if err != nil {
			b.Fatal(err)
		}
		if err := procmgr.WaitReady(ctx, l.SocketPath(floorSpec.ID)); err != nil {
			b.Fatal(err)
		}
		floor = append(floor, acct+time.Since(t0))
		m.Stop()
		b.StartTimer()
	}
	reportWithFloor(b, ds, floor)
}

// reportWithFloor reports p50 and p90 of ds, the p50 of its floor and their
// ratio.
func reportWithFloor(b *testing.B, ds, floor []time.Duration) {
	b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(ds, 0.9)), "p90-ms")
	if len(floor) > 0 {
		f := percentile(floor, 0.5)
		b.ReportMetric(ms(f), "floor-p50-ms")
		b.ReportMetric(float64(percentile(ds, 0.5))/float64(f), "ratio")
	}
}

// crashBench kills the master with SIGKILL b.N times and measures until
// done says an event completes the figure. With second, each round first
// kills the master and waits for its immediate restart, then measures the
// second crash, which falls in the restart window and is restarted after
// the policy's delay. Between rounds a person's restart resets the start
// limit, outside the timer.
func crashBench(b *testing.B, second bool, floor func() time.Duration, done func(ctx context.Context, ev procmgr.Event, oldPID int, l procmgr.Layout) bool) {
	l, opt := setup(b)
	s := newSession(b, opt)
	spec, st := provision(b, s, "bk", procmgr.SpecInput{})
	ctx := ctxFor(b)
	events, err := s.b.Subscribe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pid := st.MainPID
	// crash kills pid and waits for done; it returns how long that took.
	crash := func() time.Duration {
		if pid <= 1 {
			b.Fatalf("no master pid to kill (%d)", pid)
		}
		t0 := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		for {
			select {
			case ev := <-events:
				if ev.Status.ID == spec.ID && done(ctx, ev, pid, l) {
					return time.Since(t0)
				}
			case <-time.After(5 * time.Second):
				b.Fatalf("no event within 5s of kill -9 of %d", pid)
			}
		}
	}
	var ds, fs []time.Duration
	for b.Loop() {
		if second {
			b.StopTimer()
			crash()
			st, err := s.b.Status(ctx, spec.ID)
			if err != nil {
				b.Fatal(err)
			}
			pid = st.MainPID
			b.StartTimer()
		}
		ds = append(ds, crash())
		b.StopTimer()
		st, err := s.b.Restart(ctx, spec.ID)
		if err != nil {
			b.Fatal(err)
		}
		pid = st.MainPID
		for len(events) > 0 {
			<-events
		}
		if floor != nil {
			fs = append(fs, floor())
		}
		b.StartTimer()
	}
	reportWithFloor(b, ds, fs)
}

// waitidFloor: a child killed with SIGKILL until its parent's wait returns.
func waitidFloor(b *testing.B) func() time.Duration {
	return func() time.Duration {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		return time.Since(t0)
	}
}

// BenchmarkKillToEvent: kill -9 of the master until a subscriber receives
// the event that says it is down.
func BenchmarkKillToEvent(b *testing.B) {
	crashBench(b, false, waitidFloor(b), func(_ context.Context, ev procmgr.Event, old int, _ procmgr.Layout) bool {
		return ev.Status.MainPID != old || ev.Status.State != procmgr.StateRunning
	})
}

func restartedAndAnswering(b *testing.B) func(ctx context.Context, ev procmgr.Event, old int, l procmgr.Layout) bool {
	return func(ctx context.Context, ev procmgr.Event, old int, l procmgr.Layout) bool {
		if ev.Status.State != procmgr.StateRunning || ev.Status.MainPID == old || ev.Status.MainPID == 0 {
			return false
		}
		if err := procmgr.Ping(ctx, l.SocketPath(ev.Status.ID)); err != nil {
			b.Fatalf("running but no pong: %v", err)
		}
		return true
	}
}

// BenchmarkCrashRestartUntilPing: kill -9 of the master until the new
// master is running and answers a ping: the first crash, restarted at once.
func BenchmarkCrashRestartUntilPing(b *testing.B) {
	crashBench(b, false, nil, restartedAndAnswering(b))
}

// BenchmarkSecondCrashRestartUntilPing: the same for a second crash right
// after the first restart, which the policy restarts after its delay
// (systemd's RestartSec=100ms).
func BenchmarkSecondCrashRestartUntilPing(b *testing.B) {
	crashBench(b, true, nil, restartedAndAnswering(b))
}
