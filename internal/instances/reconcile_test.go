package instances_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

const reconciler = "reconciler"

// A panel killed in the middle of a create left a row in phase
// provisioning: at start-up it finishes the create.
func TestReconcileFinishesProvisioning(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.storeRow("half-made", nil, instances.PhaseProvisioning, instances.DesiredRunning, procmgr.SpecInput{MaxChildren: "4"})
		e.run()
		e.settle()

		if n := e.fb.CallsFor(fakebackend.OpProvision, "half-made"); n != 1 {
			t.Errorf("provision called %d times, want 1", n)
		}
		if spec, _ := e.fb.Spec("half-made"); spec.Pool.MaxChildren != 4 {
			t.Errorf("provisioned with %+v, want the stored spec", spec.Pool)
		}
		if r := e.row("half-made"); r.Phase != instances.PhaseReady {
			t.Errorf("phase %q, want ready", r.Phase)
		}
		v, err := e.svc.Get(tctx(t), root, "half-made")
		if err != nil || v.Phase != instances.PhaseReady || v.Status.State != procmgr.StateRunning || v.Status.MainPID == 0 {
			t.Errorf("view %+v, %v; want ready and running", v.Status, err)
		}
		e.wantAudit("half-made", "finish-create", "ok", reconciler)
	})
}

func TestReconcileRollsBackFailedProvisioning(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.storeRow("half-made", nil, instances.PhaseProvisioning, instances.DesiredRunning, procmgr.SpecInput{})
		e.fb.FailAlways(fakebackend.OpProvision, errors.New("php-fpm8.2 not installed"))
		e.run()
		if err := e.fb.WaitCalls(tctx(t), fakebackend.OpProvision, "half-made", 1); err != nil {
			t.Fatal(err)
		}
		e.fb.FailAlways(fakebackend.OpProvision, nil)
		e.settle()

		e.rowGone("half-made")
		if _, err := e.svc.Get(tctx(t), root, "half-made"); !errors.Is(err, instances.ErrNotFound) {
			t.Errorf("get after rollback: %v", err)
		}
		if n := e.fb.CallsFor(fakebackend.OpDeprovision, "half-made"); n != 1 {
			t.Errorf("deprovision called %d times, want 1", n)
		}
		// Purged: what the half-made create left would refuse every later
		// create of the id.
		if !deprovisionedWith(e.fb, "half-made", true) {
			t.Errorf("the rollback kept the half-made instance's files")
		}
		if e.fb.Has("half-made") {
			t.Errorf("backend still has the instance")
		}
		ev := e.wantAudit("half-made", "rollback-create", "error", reconciler)
		if !strings.Contains(ev.Detail, "not installed") {
			t.Errorf("rollback audit detail %q", ev.Detail)
		}
	})
}

// A panel killed in the middle of a remove: at start-up it finishes it.
func TestReconcileFinishesRemoving(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		spec := e.storeRow("going", nil, instances.PhaseRemoving, instances.DesiredRunning, procmgr.SpecInput{})
		e.fb.Seed(spec, procmgr.StateRunning)
		// A removing row whose instance the host no longer has is finished too.
		e.storeRow("gone", nil, instances.PhaseRemoving, instances.DesiredStopped, procmgr.SpecInput{})
		// A remove --purge interrupted: finished as a purge.
		pspec := e.storeRow("purged", nil, instances.PhasePurging, instances.DesiredRunning, procmgr.SpecInput{})
		e.fb.Seed(pspec, procmgr.StateRunning)
		e.run()
		e.settle()
		if !deprovisionedWith(e.fb, "purged", true) || !deprovisionedWith(e.fb, "going", false) {
			t.Errorf("the stored purge choice was not honoured: %+v", e.fb.History())
		}
		e.rowGone("purged")
		if ev := e.wantAudit("purged", "finish-remove", "ok", reconciler); ev.Detail != "purge" {
			t.Errorf("finish-remove of a purge says %q", ev.Detail)
		}

		for _, id := range []string{"going", "gone"} {
			if n := e.fb.CallsFor(fakebackend.OpDeprovision, procmgr.InstanceID(id)); n != 1 {
				t.Errorf("%s: deprovision called %d times, want 1", id, n)
			}
			if n := e.fb.CallsFor(fakebackend.OpProvision, procmgr.InstanceID(id)) + e.fb.CallsFor(fakebackend.OpStart, procmgr.InstanceID(id)); n != 0 {
				t.Errorf("%s: a removing instance was started", id)
			}
			e.rowGone(id)
			if _, err := e.svc.Get(tctx(t), root, id); !errors.Is(err, instances.ErrNotFound) {
				t.Errorf("get %s: %v", id, err)
			}
			e.wantAudit(id, "finish-remove", "ok", reconciler)
		}
		if e.fb.Has("going") {
			t.Errorf("backend still has the removed instance")
		}
	})
}

// Ready instances are driven to their desired state at start-up; instances
// already there are left alone.
func TestReconcileStartup(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		in := procmgr.SpecInput{}
		stopped := e.storeRow("was-stopped", nil, instances.PhaseReady, instances.DesiredRunning, in)
		e.fb.Seed(stopped, procmgr.StateStopped)
		e.storeRow("was-lost", nil, instances.PhaseReady, instances.DesiredRunning, in)
		fine := e.storeRow("fine", nil, instances.PhaseReady, instances.DesiredRunning, in)
		fineSt := e.fb.Seed(fine, procmgr.StateRunning)
		stopMe := e.storeRow("stop-me", nil, instances.PhaseReady, instances.DesiredStopped, in)
		e.fb.Seed(stopMe, procmgr.StateRunning)
		quiet := e.storeRow("quiet", nil, instances.PhaseReady, instances.DesiredStopped, in)
		e.fb.Seed(quiet, procmgr.StateStopped)
		failed := e.storeRow("failed", nil, instances.PhaseReady, instances.DesiredRunning, in)
		e.fb.Seed(failed, procmgr.StateFailed)
		looping := e.storeRow("looping", nil, instances.PhaseReady, instances.DesiredRunning, in)
		e.fb.Seed(looping, procmgr.StateCrashLooping)
		stranger := mustSpec(t, "stranger", in)
		e.fb.Seed(stranger, procmgr.StateRunning)
		e.run()
		e.settle()

		for _, id := range []procmgr.InstanceID{"was-stopped", "was-lost"} {
			if n := e.fb.CallsFor(fakebackend.OpProvision, id); n != 1 {
				t.Errorf("%s: provision called %d times, want 1", id, n)
			}
			if e.fb.State(id) != procmgr.StateRunning {
				t.Errorf("%s: backend state %s, want running", id, e.fb.State(id))
			}
			v, err := e.svc.Get(tctx(t), root, string(id))
			if err != nil || v.Status.State != procmgr.StateRunning || v.Status.MainPID == 0 {
				t.Errorf("%s: view %s pid %d, %v", id, v.Status.State, v.Status.MainPID, err)
			}
			ev := e.wantAudit(string(id), "start", "ok", reconciler)
			if !strings.Contains(ev.Detail, "desired running") {
				t.Errorf("%s: audit detail %q", id, ev.Detail)
			}
		}
		if n := e.fb.CallsFor(fakebackend.OpStop, "stop-me"); n != 1 {
			t.Errorf("stop-me: stop called %d times, want 1", n)
		}
		if e.fb.State("stop-me") != procmgr.StateStopped {
			t.Errorf("stop-me: backend state %s", e.fb.State("stop-me"))
		}
		e.wantAudit("stop-me", "stop", "ok", reconciler)
		for _, id := range []procmgr.InstanceID{"fine", "quiet", "failed", "looping", "stranger"} {
			for _, c := range e.fb.History() {
				if c.ID == id && c.Op != fakebackend.OpList {
					t.Errorf("%s: reconciler called %s, want it left alone", id, c.Op)
				}
			}
		}
		if v, _ := e.svc.Get(tctx(t), root, "fine"); v.Status.MainPID != fineSt.MainPID {
			t.Errorf("fine: pid %d, want the observed %d", v.Status.MainPID, fineSt.MainPID)
		}
		if v, _ := e.svc.Get(tctx(t), root, "failed"); v.Status.State != procmgr.StateFailed {
			t.Errorf("failed: view state %s, want failed", v.Status.State)
		}
		// The backend's instance the database does not know is not shown.
		if _, err := e.svc.Get(tctx(t), root, "stranger"); !errors.Is(err, instances.ErrNotFound) {
			t.Errorf("stranger: %v", err)
		}
	})
}

// A crash restarts the instance with a new PID: the view learns it from the
// events, subscribers see it, and the reconciler does nothing.
func TestReconcileCrashUpdatesView(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.run()
		created := e.create("wp-a", nil, procmgr.SpecInput{})
		e.settle()
		views := subscribe(t, e.svc)

		after, err := e.fb.Crash("wp-a")
		if err != nil {
			t.Fatal(err)
		}
		waitView(t, views, "wp-a crash-looping", func(v instances.View) bool {
			return v.ID == "wp-a" && v.Status.State == procmgr.StateCrashLooping
		})
		v := waitView(t, views, "wp-a running with the new pid", func(v instances.View) bool {
			return v.ID == "wp-a" && v.Status.State == procmgr.StateRunning && v.Status.MainPID == after.MainPID
		})
		if v.Status.MainPID == created.Status.MainPID || v.Status.Restarts != 1 {
			t.Errorf("view after crash: pid %d (was %d) restarts %d", v.Status.MainPID, created.Status.MainPID, v.Status.Restarts)
		}
		got, err := e.svc.Get(tctx(t), root, "wp-a")
		if err != nil || got.Status.MainPID != after.MainPID || got.Status.LastExit == nil || got.Status.LastExit.Signal != "KILL" {
			t.Errorf("get after crash: %+v, %v", got.Status, err)
		}
		e.settle()
		if n := e.fb.CallsFor(fakebackend.OpProvision, "wp-a"); n != 1 {
			t.Errorf("provision called %d times, want only the create's", n)
		}
		if n := e.fb.CallsFor(fakebackend.OpStart, "wp-a") + e.fb.CallsFor(fakebackend.OpRestart, "wp-a"); n != 0 {
			t.Errorf("the reconciler started a crash-looping instance")
		}
	})
}

// A crash loop that ended failed is left for a person: restarting it would
// undo the start limit.
func TestReconcileLeavesFailedAlone(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.run()
		e.create("wp-a", nil, procmgr.SpecInput{})
		e.settle()
		views := subscribe(t, e.svc)

		if _, err := e.fb.CrashLoopEnd("wp-a"); err != nil {
			t.Fatal(err)
		}
		waitView(t, views, "wp-a failed", func(v instances.View) bool {
			return v.ID == "wp-a" && v.Status.State == procmgr.StateFailed
		})
		e.settle()
		for _, op := range []string{fakebackend.OpStart, fakebackend.OpRestart, fakebackend.OpStartMany, fakebackend.OpStop} {
			if n := e.fb.CallsFor(op, "wp-a"); n != 0 {
				t.Errorf("%s called %d times on a failed instance", op, n)
			}
		}
		if n := e.fb.CallsFor(fakebackend.OpProvision, "wp-a"); n != 1 {
			t.Errorf("provision called %d times, want only the create's", n)
		}
		v, _ := e.svc.Get(tctx(t), root, "wp-a")
		if v.Status.State != procmgr.StateFailed || v.Status.LastExit == nil || v.Status.LastExit.Result != "start-limit-hit" {
			t.Errorf("view %+v, want failed with start-limit-hit", v.Status)
		}
		// A person's start brings it back.
		if v, err := e.svc.Start(tctx(t), root, "wp-a"); err != nil || v.Status.State != procmgr.StateRunning {
			t.Errorf("start after the crash loop: %v %s", err, v.Status.State)
		}
	})
}

// An instance stopped or lost behind the panel's back while it should run
// is started again.
func TestReconcileRestoresDesiredRunning(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.run()
		first := e.create("wp-a", nil, procmgr.SpecInput{})
		e.create("wp-b", nil, procmgr.SpecInput{})
		e.settle()
		views := subscribe(t, e.svc)

		if _, err := e.fb.StopExternally("wp-a"); err != nil {
			t.Fatal(err)
		}
		if err := e.fb.WaitCalls(tctx(t), fakebackend.OpProvision, "wp-a", 2); err != nil {
			t.Fatalf("the reconciler did not start wp-a again: %v", err)
		}
		v := waitView(t, views, "wp-a running again", func(v instances.View) bool {
			return v.ID == "wp-a" && v.Status.State == procmgr.StateRunning && v.Status.MainPID != first.Status.MainPID
		})
		if v.Desired != instances.DesiredRunning {
			t.Errorf("desired %q", v.Desired)
		}
		e.settle() // the reconciler audits after it updated the view
		ev := e.wantAudit("wp-a", "start", "ok", reconciler)
		if !strings.Contains(ev.Detail, "observed stopped") {
			t.Errorf("audit detail %q", ev.Detail)
		}

		e.fb.Lose("wp-b")
		if err := e.fb.WaitCalls(tctx(t), fakebackend.OpProvision, "wp-b", 2); err != nil {
			t.Fatalf("the reconciler did not provision lost wp-b again: %v", err)
		}
		waitView(t, views, "wp-b running again", func(v instances.View) bool {
			return v.ID == "wp-b" && v.Status.State == procmgr.StateRunning
		})
		e.settle()
		if e.fb.State("wp-b") != procmgr.StateRunning {
			t.Errorf("wp-b: %s", e.fb.State("wp-b"))
		}

		// A stopped instance that should stay stopped is not started.
		if _, err := e.svc.Stop(tctx(t), root, "wp-b"); err != nil {
			t.Fatal(err)
		}
		e.settle()
		n := e.fb.CallsFor(fakebackend.OpProvision, "wp-b")
		if _, err := e.fb.StopExternally("wp-b"); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if e.fb.CallsFor(fakebackend.OpProvision, "wp-b") != n || e.fb.State("wp-b") != procmgr.StateStopped {
			t.Errorf("the reconciler started wp-b, whose desired state is stopped")
		}
	})
}

// An instance that should be stopped but runs (started behind the panel's
// back) is stopped.
func TestReconcileStopsDesiredStopped(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.run()
		e.create("wp-a", nil, procmgr.SpecInput{})
		if _, err := e.svc.Stop(tctx(t), root, "wp-a"); err != nil {
			t.Fatal(err)
		}
		e.settle()
		// systemctl start behind the panel's back.
		if _, err := e.fb.Start(tctx(t), "wp-a"); err != nil {
			t.Fatal(err)
		}
		if err := e.fb.WaitCalls(tctx(t), fakebackend.OpStop, "wp-a", 2); err != nil {
			t.Fatalf("the reconciler did not stop wp-a: %v", err)
		}
		e.settle()
		if e.fb.State("wp-a") != procmgr.StateStopped {
			t.Errorf("backend state %s", e.fb.State("wp-a"))
		}
		e.wantAudit("wp-a", "stop", "ok", reconciler)
	})
}

// A stored spec that no longer validates (edited by hand, or written by an
// older panel with looser rules) is never handed to the backend.
func TestReconcileSkipsInvalidStoredSpec(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		for _, row := range []*store.Instance{
			{ID: "bad-spec", Spec: `{"memory_limit":"lots","env":["PATH=/evil"]}`, Phase: instances.PhaseProvisioning},
			{ID: "bad-json", Spec: `{"pm":`, Phase: instances.PhaseReady},
			{ID: "Bad_Id", Spec: `{}`, Phase: instances.PhaseRemoving},
			{ID: "tiny-tasks", Spec: `{"tasks_max":"2"}`, Phase: instances.PhaseReady},
		} {
			row.CMS, row.PHPVersion, row.DesiredState = "php", "8.2", instances.DesiredRunning
			e.storeRawRow(row)
		}
		e.run()
		e.settle()
		for _, id := range []procmgr.InstanceID{"bad-spec", "bad-json", "Bad_Id", "tiny-tasks"} {
			for _, c := range e.fb.History() {
				if c.ID == id {
					t.Errorf("%s reached the backend: %s", id, c.Op)
				}
			}
			if _, err := e.svc.Get(tctx(t), root, string(id)); err == nil {
				t.Errorf("%s is shown", id)
			}
			// The row is kept for a person to look at.
			e.row(string(id))
		}
		if ids := viewIDs(e.svc.List(tctx(t), root)); len(ids) != 1 || ids[0] != barrierID {
			t.Errorf("list %v, want only the barrier", ids)
		}
	})
}

// An event that arrives while a person's action is in flight must not be
// lost: when the action ends, the instance is reconciled against what the
// backend last reported.
func TestReconcileEventDuringActionIsNotLost(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.run()
		e.create("wp-a", nil, procmgr.SpecInput{})
		e.settle()
		views := subscribe(t, e.svc)

		entered, release := e.fb.Hold(fakebackend.OpReload)
		defer release()
		done := make(chan error, 1)
		go func() {
			_, err := e.svc.Reload(tctx(t), root, "wp-a")
			done <- err
		}()
		select {
		case <-entered:
		case err := <-done:
			t.Fatalf("reload ended early: %v", err)
		}
		// While the reload is in flight the instance is stopped behind the
		// panel's back; the reconciler sees the instance busy and skips it.
		if _, err := e.fb.StopExternally("wp-a"); err != nil {
			t.Fatal(err)
		}
		waitView(t, views, "wp-a stopped", func(v instances.View) bool {
			return v.ID == "wp-a" && v.Status.State == procmgr.StateStopped
		})
		e.syncReconciler()
		release()
		<-done // the reload fails (the instance is stopped): that is fine

		// Nothing else happens to wp-a; its desired state is still running.
		e.settle()
		if r := e.row("wp-a"); r.DesiredState != instances.DesiredRunning {
			t.Fatalf("desired %q", r.DesiredState)
		}
		if st := e.fb.State("wp-a"); st != procmgr.StateRunning {
			t.Errorf("wp-a is %s with desired state running: the reconcile skipped during the reload was never retried", st)
		}
	})
}

// A held reconcile action on one instance does not hold up actions on others,
// and the reconciler leaves an instance alone while a person acts on it.
func TestReconcileSkipsBusyInstance(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.addBarrier()
		e.run()
		e.create("wp-a", nil, procmgr.SpecInput{})
		e.settle()
		views := subscribe(t, e.svc)

		entered, release := e.fb.Hold(fakebackend.OpStop)
		defer release()
		done := make(chan error, 1)
		go func() {
			_, err := e.svc.Stop(tctx(t), root, "wp-a")
			done <- err
		}()
		<-entered
		// Desired is already stopped and the instance still runs: a
		// reconciler that ignored the action in flight would stop it too.
		after, err := e.fb.Crash("wp-a")
		if err != nil {
			t.Fatal(err)
		}
		waitView(t, views, "wp-a new pid", func(v instances.View) bool {
			return v.ID == "wp-a" && v.Status.MainPID == after.MainPID
		})
		e.syncReconciler()
		release()
		if err := <-done; err != nil {
			t.Fatalf("stop: %v", err)
		}
		e.settle()
		if n := e.fb.CallsFor(fakebackend.OpStop, "wp-a"); n != 1 {
			t.Errorf("stop called %d times, want 1 (the person's)", n)
		}
		if e.fb.State("wp-a") != procmgr.StateStopped {
			t.Errorf("backend state %s", e.fb.State("wp-a"))
		}
	})
}

func TestRunFailsWhenBackendCannotList(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.fb.FailNext(fakebackend.OpList, errors.New("dbus: connection refused"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := e.svc.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Run with a failing backend List: %v", err)
	}
	select {
	case <-e.svc.Started():
		t.Errorf("Started closed although loading failed")
	default:
	}
}

func TestRunEndsWhenBackendCloses(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(context.Background()) }()
	select {
	case <-e.svc.Started():
	case <-time.After(waitTimeout):
		t.Fatal("Run did not start")
	}
	e.fb.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "event stream closed") {
			t.Errorf("Run after the backend closed: %v, want an error about the event stream", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not end when the backend's event stream closed")
	}
}

// A "stopped" that the service's subscription lost (it fell behind) is not
// lost for good: the first event after the gap is marked Lost, the service
// reads every instance again with List, and the reconciler starts the
// stopped one again.
func TestReconcileRereadsAfterLostEvents(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.addBarrier()
	e.run()
	e.create("wp-a", nil, procmgr.SpecInput{})
	e.create("wp-b", nil, procmgr.SpecInput{})
	e.create("wp-c", nil, procmgr.SpecInput{})
	e.settle()
	lists := e.fb.Calls(fakebackend.OpList)
	views := subscribe(t, e.svc)

	// Two events are lost (wp-a stopped, wp-c gone); the first of wp-b's
	// crash is marked Lost.
	e.fb.DropEvents(2)
	if _, err := e.fb.StopExternally("wp-a"); err != nil {
		t.Fatal(err)
	}
	e.fb.Lose("wp-c")
	if _, err := e.fb.Crash("wp-b"); err != nil {
		t.Fatal(err)
	}
	if err := e.fb.WaitCalls(tctx(t), fakebackend.OpProvision, "wp-a", 2); err != nil {
		t.Fatalf("the stopped instance whose event was lost was not started again: %v", err)
	}
	if err := e.fb.WaitCalls(tctx(t), fakebackend.OpProvision, "wp-c", 2); err != nil {
		t.Fatalf("the lost instance whose event was lost was not provisioned again: %v", err)
	}
	waitView(t, views, "wp-a running again", func(v instances.View) bool {
		return v.ID == "wp-a" && v.Status.State == procmgr.StateRunning
	})
	e.settle()
	if n := e.fb.Calls(fakebackend.OpList); n != lists+1 {
		t.Errorf("List called %d times after the gap, want once", n-lists)
	}
	for _, id := range []procmgr.InstanceID{"wp-a", "wp-b", "wp-c"} {
		if st := e.fb.State(id); st != procmgr.StateRunning {
			t.Errorf("%s: %s, want running", id, st)
		}
	}
}

// A failed re-read is tried again until it succeeds.
func TestReconcileRetriesAFailedReread(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.addBarrier()
	e.run()
	e.create("wp-a", nil, procmgr.SpecInput{})
	e.settle()
	e.fb.FailNext(fakebackend.OpList, errors.New("dbus: connection reset"))
	e.fb.DropEvents(1)
	// wp-a's stop is lost; the next event is marked Lost.
	if _, err := e.fb.StopExternally("wp-a"); err != nil {
		t.Fatal(err)
	}
	e.fb.Publish(procmgr.Status{ID: barrierID, State: procmgr.StateRunning, Backend: fakebackend.Name})
	if err := e.fb.WaitCalls(tctx(t), fakebackend.OpProvision, "wp-a", 2); err != nil {
		t.Fatalf("after a failed re-read the stopped instance was not started again: %v", err)
	}
}

// Run fails, saying why, when the backend refuses its subscription.
func TestRunFailsWhenSubscriptionRefused(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range procmgr.MaxSubscribers {
		if _, err := e.fb.Subscribe(ctx); err != nil {
			t.Fatal(err)
		}
	}
	err := e.svc.Run(tctx(t))
	if !errors.Is(err, procmgr.ErrTooManySubscribers) || !strings.Contains(err.Error(), "subscribe") {
		t.Errorf("Run with every subscriber place taken: %v, want an error wrapping ErrTooManySubscribers", err)
	}
}

// deprovisionedWith reports whether the fake deprovisioned id with that purge flag.
func deprovisionedWith(fb *fakebackend.Backend, id procmgr.InstanceID, purge bool) bool {
	for _, c := range fb.History() {
		if c.Op == fakebackend.OpDeprovision && c.ID == id && c.Purge == purge {
			return true
		}
	}
	return false
}

// 10,000 instances recorded as running and absent from the host (a reboot
// that lost them all): after the panel starts, every one is provisioned
// and running. The reconciler marks each instance at most once and never
// drops a mark, however far behind it is.
func TestReconcileStartsTenThousandLostInstances(t *testing.T) {
	const n = 10_000
	e := newEnv(t, store.DialectSQLite)
	rows := make([]store.Instance, 0, n)
	for i := range n {
		id := fmt.Sprintf("lost-%05d", i)
		spec := mustSpec(t, id, procmgr.SpecInput{})
		data, err := procmgr.MarshalSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, store.Instance{ID: id, CMS: string(spec.CMS), PHPVersion: string(spec.PHP), Spec: string(data),
			DesiredState: instances.DesiredRunning, Phase: instances.PhaseReady, Generation: 1})
	}
	if err := e.db.Gorm().CreateInBatches(rows, 500).Error; err != nil {
		t.Fatalf("store %d rows: %v", n, err)
	}
	e.run()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := e.svc.WaitIdle(ctx); err != nil {
		t.Fatalf("reconciler not idle: %v", err)
	}
	var notRunning []string
	for _, r := range rows {
		if st := e.fb.State(procmgr.InstanceID(r.ID)); st != procmgr.StateRunning {
			notRunning = append(notRunning, r.ID+" "+string(st))
		}
	}
	if len(notRunning) > 0 {
		t.Fatalf("%d of %d lost instances not running after the panel started, e.g. %v", len(notRunning), n, notRunning[:min(5, len(notRunning))])
	}
	if p := e.fb.Calls(fakebackend.OpProvision); p != n {
		t.Errorf("provision called %d times for %d instances, want once each", p, n)
	}
}
