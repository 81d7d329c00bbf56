package instances_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
)

// A create of an id the host already has (but the database does not) is
// refused, and what the host has is left as it was.
func TestCreateRefusesInstanceOnHostWithoutRow(t *testing.T) {
	e := newEnv(t, "sqlite")
	spec, err := procmgr.ParseSpec("wp-x", procmgr.SpecInput{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fb.Seed(spec, procmgr.StateRunning)
	_, err = e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "wp-x"})
	if !errors.Is(err, instances.ErrConflict) {
		t.Fatalf("create over an instance the host has: %v, want ErrConflict", err)
	}
	if !e.fb.Has("wp-x") || e.fb.State("wp-x") != procmgr.StateRunning {
		t.Errorf("the host's instance was changed: has %v, state %s", e.fb.Has("wp-x"), e.fb.State("wp-x"))
	}
	if e.fb.CallsFor("Deprovision", "wp-x") != 0 || e.fb.CallsFor("Provision", "wp-x") != 0 {
		t.Errorf("create touched the host's instance")
	}
	if _, err := e.db.GetInstance(tctx(t), "wp-x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("row left behind: %v", err)
	}
}

// An instance a remove left half done refuses everything but a remove.
func TestActionsRefusedOnHalfRemovedInstance(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.create("wp-r", nil, procmgr.SpecInput{})
	e.fb.FailNext("Deprovision", errors.New("disk on fire"))
	if err := e.svc.Remove(tctx(t), root, "wp-r", false); err == nil {
		t.Fatal("remove with a failing backend succeeded")
	}
	if r := e.row("wp-r"); r.Phase != instances.PhaseRemoving {
		t.Fatalf("phase after a failed remove: %s", r.Phase)
	}
	if _, err := e.svc.Start(tctx(t), root, "wp-r"); !errors.Is(err, instances.ErrConflict) {
		t.Errorf("start of a half-removed instance: %v, want ErrConflict", err)
	}
	if _, err := e.svc.Set(tctx(t), root, "wp-r", procmgr.SpecInput{MemoryMax: "1G"}); !errors.Is(err, instances.ErrConflict) {
		t.Errorf("set of a half-removed instance: %v, want ErrConflict", err)
	}
	if err := e.svc.Remove(tctx(t), root, "wp-r", false); err != nil {
		t.Errorf("a second remove: %v", err)
	}
	if e.fb.Has("wp-r") {
		t.Errorf("instance still on the host after the second remove")
	}
}

// A status older than the one held (an action's result that an event
// overtook) does not replace it.
func TestOlderStatusDoesNotOverwriteNewer(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.run()
	e.create("wp-s", nil, procmgr.SpecInput{})
	e.create("wp-m", nil, procmgr.SpecInput{})
	v, _ := e.svc.Get(tctx(t), root, "wp-s")
	newer := v.Status
	newer.Seq, newer.State = 1<<40, procmgr.StateFailed
	older := newer
	older.Seq, older.State = 1<<39, procmgr.StateRunning
	m, _ := e.svc.Get(tctx(t), root, "wp-m")
	marker := m.Status
	marker.Seq = 1 << 41
	// Events are applied in order: once the marker shows, both statuses of
	// wp-s have been seen.
	e.fb.Publish(newer)
	e.fb.Publish(older)
	e.fb.Publish(marker)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := e.svc.Get(tctx(t), root, "wp-m"); got.Status.Seq == marker.Seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("marker status never applied")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if got, _ := e.svc.Get(tctx(t), root, "wp-s"); got.Status.Seq != newer.Seq || got.Status.State != procmgr.StateFailed {
		t.Errorf("status seq %d state %s, want the newer (%d, failed)", got.Status.Seq, got.Status.State, newer.Seq)
	}
}

// An instance that keeps stopping on its own is started again by the
// reconciler only up to the limit; a person's start lifts it.
func TestReconcilerStopsRestartingAnInstanceThatKeepsExiting(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.run()
	e.create("wp-loop", nil, procmgr.SpecInput{})
	for i := 0; i < 8; i++ {
		if _, err := e.fb.StopExternally("wp-loop"); err != nil {
			t.Fatal(err)
		}
		// Give the reconciler its chance to start it again.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) && e.fb.State("wp-loop") != procmgr.StateRunning {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if n := e.fb.CallsFor("Provision", "wp-loop"); n > 1+5 {
		t.Errorf("reconciler started a self-stopping instance %d times, want at most 5 after the create", n-1)
	}
	if st := e.fb.State("wp-loop"); st != procmgr.StateStopped {
		t.Errorf("after the limit the instance is %s, want stopped", st)
	}
	if r := e.row("wp-loop"); r.LastError == "" {
		t.Errorf("no last error recorded for the instance left stopped")
	}
	if _, err := e.svc.Start(tctx(t), root, "wp-loop"); err != nil || e.fb.State("wp-loop") != procmgr.StateRunning {
		t.Errorf("a person's start after the limit: %v, state %s", err, e.fb.State("wp-loop"))
	}
}
