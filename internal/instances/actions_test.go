package instances_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
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
)

func TestPowerActions(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		created := e.create("wp-a", nil, procmgr.SpecInput{})
		ctx := tctx(t)

		v, err := e.svc.Stop(ctx, root, "wp-a")
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
		if v.Desired != instances.DesiredStopped || v.Status.State != procmgr.StateStopped || v.Status.MainPID != 0 {
			t.Errorf("after stop: desired %q state %s pid %d", v.Desired, v.Status.State, v.Status.MainPID)
		}
		if r := e.row("wp-a"); r.DesiredState != instances.DesiredStopped {
			t.Errorf("stored desired %q after stop, want stopped", r.DesiredState)
		}
		if e.fb.State("wp-a") != procmgr.StateStopped {
			t.Errorf("backend state %s after stop", e.fb.State("wp-a"))
		}
		// Stopping a stopped instance is not an error.
		if _, err := e.svc.Stop(ctx, root, "wp-a"); err != nil {
			t.Errorf("second stop: %v", err)
		}

		v, err = e.svc.Start(ctx, root, "wp-a")
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if v.Desired != instances.DesiredRunning || v.Status.State != procmgr.StateRunning || v.Status.MainPID == 0 || v.Status.MainPID == created.Status.MainPID {
			t.Errorf("after start: desired %q state %s pid %d (first pid %d)", v.Desired, v.Status.State, v.Status.MainPID, created.Status.MainPID)
		}
		if r := e.row("wp-a"); r.DesiredState != instances.DesiredRunning {
			t.Errorf("stored desired %q after start, want running", r.DesiredState)
		}
		startedPID := v.Status.MainPID

		v, err = e.svc.Restart(ctx, root, "wp-a")
		if err != nil {
			t.Fatalf("restart: %v", err)
		}
		if v.Status.State != procmgr.StateRunning || v.Status.MainPID == startedPID {
			t.Errorf("after restart: state %s pid %d, want running with a pid other than %d", v.Status.State, v.Status.MainPID, startedPID)
		}
		restartedPID := v.Status.MainPID

		v, err = e.svc.Reload(ctx, root, "wp-a")
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		if v.Status.MainPID != restartedPID {
			t.Errorf("reload changed the pid %d -> %d", restartedPID, v.Status.MainPID)
		}

		if err := e.svc.Kill(ctx, root, "wp-a", "sigusr1"); err != nil {
			t.Fatalf("kill: %v", err)
		}
		var sigs []procmgr.Signal
		for _, c := range e.fb.History() {
			if c.Op == fakebackend.OpKill {
				sigs = append(sigs, c.Signal)
			}
		}
		if len(sigs) != 1 || sigs[0] != procmgr.SigUSR1 {
			t.Errorf("signals sent %v, want [USR1]", sigs)
		}

		got, err := e.svc.Get(ctx, root, "wp-a")
		if err != nil || got.Status.MainPID != restartedPID {
			t.Errorf("get: pid %d, %v; want %d", got.Status.MainPID, err, restartedPID)
		}

		evs := e.audit("wp-a")
		var actions []string
		for _, ev := range evs {
			actions = append(actions, ev.Action+" "+ev.Result)
			if ev.Actor != "root" || ev.InstanceID != "wp-a" {
				t.Errorf("audit %+v: want actor root and instance wp-a", ev)
			}
		}
		want := []string{"create ok", "stop ok", "stop ok", "start ok", "restart ok", "reload ok", "kill ok"}
		if !slices.Equal(actions, want) {
			t.Errorf("audit %v, want %v", actions, want)
		}
		if ev, _ := findAudit(evs, "kill", "ok"); ev.Detail != "signal USR1" {
			t.Errorf("kill audit detail %q, want %q", ev.Detail, "signal USR1")
		}
	})
}

func TestPowerActionErrors(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.create("wp-a", nil, procmgr.SpecInput{})
		ctx := tctx(t)

		// Unknown and malformed ids never reach the backend.
		before := e.fb.TotalCalls()
		_, err := e.svc.Start(ctx, root, "wp-none")
		isErr(t, err, instances.ErrNotFound, "start of an unknown id")
		_, err = e.svc.Stop(ctx, root, "../etc")
		isErr(t, err, instances.ErrInvalid, "stop of a malformed id")
		isErr(t, e.svc.Kill(ctx, root, "wp-none", "TERM"), instances.ErrNotFound, "kill of an unknown id")
		isErr(t, e.svc.Remove(ctx, root, "wp-none", false), instances.ErrNotFound, "remove of an unknown id")
		_, err = e.svc.Set(ctx, root, "wp-none", procmgr.SpecInput{})
		isErr(t, err, instances.ErrNotFound, "set of an unknown id")
		// Signals outside the allow-list are invalid.
		for _, sig := range []string{"9", "STOP", "SIGSEGV", ""} {
			isErr(t, e.svc.Kill(ctx, root, "wp-a", sig), instances.ErrInvalid, "kill with signal "+sig)
		}
		if n := e.fb.TotalCalls(); n != before {
			t.Errorf("refused requests reached the backend: %+v", e.fb.History()[before:])
		}

		// Backend ErrConflict -> ErrConflict: reload and kill of a stopped
		// instance.
		if _, err := e.svc.Stop(ctx, root, "wp-a"); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Reload(ctx, root, "wp-a")
		isErr(t, err, instances.ErrConflict, "reload of a stopped instance")
		isErr(t, err, procmgr.ErrConflict, "reload of a stopped instance (chain kept)")
		if r := e.row("wp-a"); !strings.Contains(r.LastError, "reload") {
			t.Errorf("stored last error %q, want the reload's error", r.LastError)
		}
		e.wantAudit("wp-a", "reload", "error", "root")
		isErr(t, e.svc.Kill(ctx, root, "wp-a", "TERM"), instances.ErrConflict, "kill of a stopped instance")
		e.wantAudit("wp-a", "kill", "error", "root")

		// Backend ErrNotFound -> ErrNotFound: the host lost the instance.
		e.fb.Lose("wp-a")
		_, err = e.svc.Stop(ctx, root, "wp-a")
		isErr(t, err, instances.ErrNotFound, "stop of an instance the host lost")
		e.wantAudit("wp-a", "stop", "error", "root")
		// Start makes it again (Start goes through Provision).
		if v, err := e.svc.Start(ctx, root, "wp-a"); err != nil || v.Status.State != procmgr.StateRunning {
			t.Fatalf("start of a lost instance: %v %s", err, v.Status.State)
		}

		// Any other backend failure passes through, recorded and audited;
		// the desired state is still stored.
		e.fb.FailNext(fakebackend.OpStop, errors.New("job canceled"))
		_, err = e.svc.Stop(ctx, root, "wp-a")
		if err == nil || !strings.Contains(err.Error(), "job canceled") {
			t.Errorf("stop with a failing backend: %v", err)
		}
		r := e.row("wp-a")
		if r.DesiredState != instances.DesiredStopped || !strings.Contains(r.LastError, "job canceled") {
			t.Errorf("row after failed stop: desired %q error %q", r.DesiredState, r.LastError)
		}
		if v, _ := e.svc.Get(ctx, root, "wp-a"); !strings.Contains(v.LastError, "job canceled") {
			t.Errorf("view last error %q", v.LastError)
		}
		e.fb.FailNext(fakebackend.OpRestart, procmgr.ErrUnsupported)
		_, err = e.svc.Restart(ctx, root, "wp-a")
		isErr(t, err, procmgr.ErrUnsupported, "restart with an unsupported backend")
		e.wantAudit("wp-a", "restart", "error", "root")
		e.fb.FailNext(fakebackend.OpProvision, procmgr.ErrConflict)
		_, err = e.svc.Start(ctx, root, "wp-a")
		isErr(t, err, instances.ErrConflict, "start with a host clash")
		e.wantAudit("wp-a", "start", "error", "root")
	})
}

func TestSetOnlyLimits(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		created := e.create("wp-a", nil, procmgr.SpecInput{})
		provisions := e.fb.Calls(fakebackend.OpProvision)

		v, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MemoryMax: "1G", CPUQuota: "50%"})
		if err != nil {
			t.Fatalf("set: %v", err)
		}
		if n := e.fb.CallsFor(fakebackend.OpSetLimits, "wp-a"); n != 1 {
			t.Errorf("SetLimits called %d times, want 1", n)
		}
		if n := e.fb.Calls(fakebackend.OpProvision); n != provisions {
			t.Errorf("Provision called for a limits-only change")
		}
		if v.Spec.MemoryMax != "1G" || v.Spec.CPUQuota != "50%" || v.Spec.MaxChildren != "5" {
			t.Errorf("view spec %+v, want memory_max 1G cpu 50%% and the rest kept", v.Spec)
		}
		if v.Status.Limits.MemoryMax != 1<<30 || v.Status.MainPID != created.Status.MainPID {
			t.Errorf("status limits %+v pid %d", v.Status.Limits, v.Status.MainPID)
		}
		stored, err := procmgr.UnmarshalSpec("wp-a", []byte(e.row("wp-a").Spec))
		if err != nil || stored.Limits.MemoryMax != 1<<30 || stored.Limits.CPUQuota != 50 {
			t.Errorf("stored spec %+v, %v", stored.Limits, err)
		}
		ev := e.wantAudit("wp-a", "set", "ok", "root")
		if !strings.Contains(ev.Detail, "memory_max 512M->1G") || !strings.Contains(ev.Detail, "cpu_quota 100%->50%") {
			t.Errorf("set audit detail %q", ev.Detail)
		}

		// An invalid change changes nothing and reaches no backend.
		calls := e.fb.TotalCalls()
		_, err = e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MemoryMax: "1T0"})
		isErr(t, err, instances.ErrInvalid, "set with a bad memory_max")
		_, err = e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MaxChildren: "100", TasksMax: "50"})
		isErr(t, err, instances.ErrInvalid, "set with tasks_max below max_children+1")
		if e.fb.TotalCalls() != calls {
			t.Errorf("invalid sets reached the backend: %+v", e.fb.History()[calls:])
		}
		if v, _ := e.svc.Get(tctx(t), root, "wp-a"); v.Spec.MemoryMax != "1G" {
			t.Errorf("invalid set changed the spec: %+v", v.Spec)
		}

		// A failing SetLimits is recorded.
		e.fb.FailNext(fakebackend.OpSetLimits, errors.New("read back 2G"))
		_, err = e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MemoryMax: "2G"})
		if err == nil {
			t.Fatal("set with a failing backend succeeded")
		}
		e.wantAudit("wp-a", "set", "error", "root")
		if r := e.row("wp-a"); !strings.Contains(r.LastError, "read back 2G") {
			t.Errorf("last error %q", r.LastError)
		}
	})
}

func TestSetPoolOnRunning(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		created := e.create("wp-a", nil, procmgr.SpecInput{})
		v, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MaxChildren: "8", Env: []string{"A=1"}})
		if err != nil {
			t.Fatalf("set: %v", err)
		}
		if n := e.fb.CallsFor(fakebackend.OpProvision, "wp-a"); n != 2 {
			t.Errorf("Provision called %d times, want 2 (create, set)", n)
		}
		if n := e.fb.Calls(fakebackend.OpSetLimits); n != 0 {
			t.Errorf("SetLimits called %d times for a pool change on a running instance", n)
		}
		if spec, _ := e.fb.Spec("wp-a"); spec.Pool.MaxChildren != 8 || len(spec.Env) != 1 {
			t.Errorf("backend spec %+v, want max_children 8 and the env", spec)
		}
		if v.Status.MainPID != created.Status.MainPID || v.Status.State != procmgr.StateRunning {
			t.Errorf("a pool change is a graceful reload: pid %d -> %d, state %s", created.Status.MainPID, v.Status.MainPID, v.Status.State)
		}
		if v.Spec.MaxChildren != "8" {
			t.Errorf("view spec %+v", v.Spec)
		}
		// Env: [] clears the environment; a nil Env keeps it.
		if v, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MaxRequests: "100"}); err != nil || len(v.Spec.Env) != 1 {
			t.Errorf("set without env: %v, env %v; want it kept", err, v.Spec.Env)
		}
		if v, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{Env: []string{}}); err != nil || len(v.Spec.Env) != 0 {
			t.Errorf("set with empty env: %v, env %v; want it cleared", err, v.Spec.Env)
		}
		if n := e.fb.CallsFor(fakebackend.OpProvision, "wp-a"); n != 4 {
			t.Errorf("Provision called %d times, want 4", n)
		}
	})
}

func TestSetPoolOnStopped(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.create("wp-a", nil, procmgr.SpecInput{})
		e.create("wp-b", nil, procmgr.SpecInput{})
		for _, id := range []string{"wp-a", "wp-b"} {
			if _, err := e.svc.Stop(tctx(t), root, id); err != nil {
				t.Fatal(err)
			}
		}
		provisions := e.fb.Calls(fakebackend.OpProvision)
		for _, id := range []string{"wp-a", "wp-b"} {
			v, err := e.svc.Set(tctx(t), root, id, procmgr.SpecInput{MaxChildren: "9", PM: "static"})
			if err != nil {
				t.Fatalf("set %s: %v", id, err)
			}
			if v.Status.State != procmgr.StateStopped || v.Desired != instances.DesiredStopped {
				t.Errorf("%s after set: state %s desired %s, want it left stopped", id, v.Status.State, v.Desired)
			}
		}
		if e.fb.Calls(fakebackend.OpProvision) != provisions || e.fb.Calls(fakebackend.OpStart) != 0 || e.fb.Calls(fakebackend.OpRestart) != 0 {
			t.Errorf("a set on a stopped instance started it: %+v", e.fb.History())
		}
		if e.fb.State("wp-a") != procmgr.StateStopped {
			t.Errorf("backend state %s", e.fb.State("wp-a"))
		}
		if spec, _ := e.fb.Spec("wp-a"); spec.Pool.MaxChildren == 9 {
			t.Errorf("the pool change reached the stopped instance's config before its start")
		}

		// The next start writes the new config (through Provision).
		if _, err := e.svc.Start(tctx(t), root, "wp-a"); err != nil {
			t.Fatal(err)
		}
		if spec, _ := e.fb.Spec("wp-a"); spec.Pool.MaxChildren != 9 || spec.Pool.PM != procmgr.PMStatic {
			t.Errorf("after start the backend has pool %+v, want static with 9", spec.Pool)
		}
		// So does a restart.
		if _, err := e.svc.Restart(tctx(t), root, "wp-b"); err != nil {
			t.Fatal(err)
		}
		if spec, _ := e.fb.Spec("wp-b"); spec.Pool.MaxChildren != 9 {
			t.Errorf("after restart the backend has pool %+v, want 9 children", spec.Pool)
		}
		if e.fb.State("wp-b") != procmgr.StateRunning {
			t.Errorf("wp-b after restart: %s", e.fb.State("wp-b"))
		}
	})
}

func TestRemove(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.create("wp-a", nil, procmgr.SpecInput{})
		e.create("wp-b", nil, procmgr.SpecInput{})
		views := subscribe(t, e.svc)

		e.fb.FailNext(fakebackend.OpDeprovision, errors.New("userdel: user is logged in"))
		if err := e.svc.Remove(tctx(t), root, "wp-a", true); err == nil {
			t.Fatal("remove with a failing backend succeeded")
		}
		r := e.row("wp-a")
		if r.Phase != instances.PhasePurging || !strings.Contains(r.LastError, "userdel") {
			t.Errorf("row after failed remove: phase %q error %q", r.Phase, r.LastError)
		}
		e.wantAudit("wp-a", "remove", "error", "root")

		if err := e.svc.Remove(tctx(t), root, "wp-a", true); err != nil {
			t.Fatalf("remove: %v", err)
		}
		e.rowGone("wp-a")
		if e.fb.Has("wp-a") {
			t.Errorf("backend still has wp-a")
		}
		var purge []bool
		for _, c := range e.fb.History() {
			if c.Op == fakebackend.OpDeprovision && c.ID == "wp-a" {
				purge = append(purge, c.Purge)
			}
		}
		if !slices.Equal(purge, []bool{true, true}) {
			t.Errorf("deprovision purge flags %v, want [true true]", purge)
		}
		if _, err := e.svc.Get(tctx(t), root, "wp-a"); !errors.Is(err, instances.ErrNotFound) {
			t.Errorf("get after remove: %v", err)
		}
		if ev := e.wantAudit("wp-a", "remove", "ok", "root"); ev.Detail != "purge" {
			t.Errorf("remove audit detail %q, want purge", ev.Detail)
		}
		waitView(t, views, "wp-a removed", func(v instances.View) bool { return v.ID == "wp-a" && v.Phase == "removed" })

		if err := e.svc.Remove(tctx(t), root, "wp-b", false); err != nil {
			t.Fatal(err)
		}
		if ev := e.wantAudit("wp-b", "remove", "ok", "root"); ev.Detail != "" {
			t.Errorf("remove without purge: detail %q", ev.Detail)
		}
		if list := e.svc.List(tctx(t), root); len(list) != 0 {
			t.Errorf("list after removes: %v", viewIDs(list))
		}
		// The audit log outlives the instance.
		if evs := e.audit("wp-a"); len(evs) < 3 {
			t.Errorf("audit of the removed instance: %s", describeAudit(evs))
		}
	})
}

func TestStartAll(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		// StartMany reports no statuses: the view learns of the starts from
		// the backend's events, so the Run loop must be running.
		e.addBarrier()
		e.run()
		alice := e.user("alice", auth.RoleCustomer)
		for _, id := range []string{"a-1", "a-2", "b-1", "c-1"} {
			var owner *uint
			if strings.HasPrefix(id, "a-") {
				owner = &alice.UserID
			}
			e.create(id, owner, procmgr.SpecInput{})
		}
		for _, id := range []string{"a-1", "a-2", "b-1"} {
			if _, err := e.svc.Stop(tctx(t), root, id); err != nil {
				t.Fatal(err)
			}
		}
		// a-2's config changed while stopped: it must start through Provision.
		if _, err := e.svc.Set(tctx(t), root, "a-2", procmgr.SpecInput{MaxChildren: "3"}); err != nil {
			t.Fatal(err)
		}

		// Let the events of the actions above reach the view first, so
		// that only the start-all's events follow.
		e.settle()
		views := subscribe(t, e.svc)
		res, err := e.svc.StartAll(tctx(t), alice)
		if err != nil {
			t.Fatalf("start-all as customer: %v", err)
		}
		started := res.Started
		sort.Strings(started)
		if !slices.Equal(started, []string{"a-1", "a-2"}) || len(res.Failed) != 0 {
			t.Errorf("customer started %v, want only their own a-1 a-2", started)
		}
		if e.fb.State("b-1") != procmgr.StateStopped {
			t.Errorf("customer's start-all started someone else's b-1")
		}
		if e.fb.CallsFor(fakebackend.OpStartMany, "a-1") != 1 || e.fb.CallsFor(fakebackend.OpStartMany, "a-2") != 0 {
			t.Errorf("batch: %+v", e.fb.History())
		}
		if spec, _ := e.fb.Spec("a-2"); spec.Pool.MaxChildren != 3 || e.fb.State("a-2") != procmgr.StateRunning {
			t.Errorf("a-2 after start-all: %s with %d children, want running with the new config", e.fb.State("a-2"), spec.Pool.MaxChildren)
		}
		for _, id := range []string{"a-1", "a-2"} {
			if r := e.row(id); r.DesiredState != instances.DesiredRunning {
				t.Errorf("%s desired %q after start-all", id, r.DesiredState)
			}
		}
		if _, ok := findAudit(e.audit(""), "start-all", "ok"); !ok {
			t.Errorf("no start-all audit")
		}

		running := map[string]bool{}
		waitView(t, views, "a-1 and a-2 running", func(v instances.View) bool {
			running[v.ID] = v.Status.State == procmgr.StateRunning
			return running["a-1"] && running["a-2"]
		})
		res, err = e.svc.StartAll(tctx(t), root)
		if err != nil || !slices.Equal(res.Started, []string{"b-1"}) {
			t.Errorf("admin start-all: %v, %v; want [b-1], the only instance not running", res.Started, err)
		}
	})
}

// A batch start reports each instance: one whose start job failed under
// load is tried once more alone and started; one that fails again is
// reported with its reason and its error recorded; the rest of the batch
// starts, and the call as a whole succeeds.
func TestStartAllReportsEachInstance(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.run()
	stopAll := func(ids ...string) {
		for _, id := range ids {
			if _, err := e.svc.Stop(tctx(t), root, id); err != nil {
				t.Fatal(err)
			}
		}
		e.idle()
	}
	for _, id := range []string{"s-1", "s-2", "s-3"} {
		e.create(id, nil, procmgr.SpecInput{})
	}
	stopAll("s-1", "s-2", "s-3")

	// s-2 fails in the batch and again alone.
	e.fb.FailInBatch("s-2", 1)
	e.fb.FailNext(fakebackend.OpProvision, errors.New("php-fpm exited at once"))
	res, err := e.svc.StartAll(tctx(t), root)
	if err != nil {
		t.Fatalf("start-all failed as a whole: %v", err)
	}
	if !slices.Equal(res.Started, []string{"s-1", "s-3"}) {
		t.Errorf("started %v, want s-1 s-3", res.Started)
	}
	if len(res.Failed) != 1 || res.Failed[0].ID != "s-2" || !strings.Contains(res.Failed[0].Error, "php-fpm exited at once") {
		t.Errorf("failed %+v, want s-2 with its reason", res.Failed)
	}
	for _, id := range []procmgr.InstanceID{"s-1", "s-3"} {
		if e.fb.State(id) != procmgr.StateRunning {
			t.Errorf("%s: %s after start-all, want running", id, e.fb.State(id))
		}
	}
	if r := e.row("s-2"); !strings.Contains(r.LastError, "php-fpm exited at once") || r.DesiredState != instances.DesiredRunning {
		t.Errorf("s-2 row: desired %s, last error %q", r.DesiredState, r.LastError)
	}
	if ev, ok := findAudit(e.audit(""), "start-all", "ok"); !ok || !strings.Contains(ev.Detail, "2 started, 1 failed s-2") {
		t.Errorf("start-all audit %+v", ev)
	}

	// s-3 fails in the batch (a timeout under load) and starts alone.
	stopAll("s-1", "s-3")
	e.fb.FailInBatch("s-3", 1)
	res, err = e.svc.StartAll(tctx(t), root)
	if err != nil || len(res.Failed) != 0 || !slices.Contains(res.Started, "s-3") {
		t.Errorf("second start-all: %+v, %v; want s-3 started on its retry", res, err)
	}
	if e.fb.State("s-3") != procmgr.StateRunning {
		t.Errorf("s-3: %s after its retry", e.fb.State("s-3"))
	}
}

// Two people acting on one instance at once must not undo each other's
// stored intent: a stop racing a settings change must leave both the new
// settings and the stopped state in the database.
func TestConcurrentActionsKeepBothIntents(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		db := storetest.Open(t, dialect, store.Options{})
		gs := &gatedStore{DB: db}
		e := newEnvWith(t, db, gs)
		e.create("wp-a", nil, procmgr.SpecInput{})

		entered, release := gs.hold("UpdateInstance")
		stopped := make(chan error, 1)
		go func() {
			_, err := e.svc.Stop(tctx(t), root, "wp-a")
			stopped <- err
		}()
		select {
		case <-entered:
		case err := <-stopped:
			t.Fatalf("stop finished without writing its intent: %v", err)
		}
		// The stop is writing desired=stopped; meanwhile an admin changes
		// the limits. Actions on one instance are serialised, so the set
		// waits for the stop and then writes on top of it.
		set := make(chan error, 1)
		go func() {
			_, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MemoryMax: "1G"})
			set <- err
		}()
		release()
		if err := <-stopped; err != nil {
			t.Fatalf("stop: %v", err)
		}
		if err := <-set; err != nil {
			t.Fatalf("set: %v", err)
		}

		r := e.row("wp-a")
		spec, err := procmgr.UnmarshalSpec("wp-a", []byte(r.Spec))
		if err != nil {
			t.Fatal(err)
		}
		if r.DesiredState != instances.DesiredStopped || spec.Limits.MemoryMax != 1<<30 {
			t.Errorf("stored row: desired %q memory_max %s; want stopped and 1G (one action's write undid the other's)",
				r.DesiredState, spec.Limits.MemoryMax)
		}
		v, _ := e.svc.Get(tctx(t), root, "wp-a")
		if v.Desired != instances.DesiredStopped || v.Spec.MemoryMax != "1G" {
			t.Errorf("view: desired %q memory_max %s; want stopped and 1G", v.Desired, v.Spec.MemoryMax)
		}
	})
}

// gatedStore is the real store with gates on some writes, to put two
// actions' writes in a chosen order.
type gatedStore struct {
	*store.DB
	mu    sync.Mutex
	gates map[string]*storeGate
	fails map[string]error
}

// failNext makes the next call of the method named op fail with err.
func (g *gatedStore) failNext(op string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fails == nil {
		g.fails = map[string]error{}
	}
	g.fails[op] = err
}

type storeGate struct {
	entered  chan struct{}
	released chan struct{}
}

// hold makes the next call of the method named op wait until release.
func (g *gatedStore) hold(op string) (entered <-chan struct{}, release func()) {
	sg := &storeGate{entered: make(chan struct{}), released: make(chan struct{})}
	g.mu.Lock()
	if g.gates == nil {
		g.gates = map[string]*storeGate{}
	}
	g.gates[op] = sg
	g.mu.Unlock()
	var once sync.Once
	return sg.entered, func() { once.Do(func() { close(sg.released) }) }
}

func (g *gatedStore) wait(ctx context.Context, op string) error {
	g.mu.Lock()
	sg := g.gates[op]
	delete(g.gates, op)
	ferr := g.fails[op]
	delete(g.fails, op)
	g.mu.Unlock()
	if ferr != nil {
		return ferr
	}
	if sg == nil {
		return nil
	}
	close(sg.entered)
	select {
	case <-sg.released:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedStore) UpdateInstance(ctx context.Context, inst *store.Instance) error {
	if err := g.wait(ctx, "UpdateInstance"); err != nil {
		return err
	}
	return g.DB.UpdateInstance(ctx, inst)
}

func (g *gatedStore) SetDesiredStates(ctx context.Context, ids []string, desired string) error {
	if err := g.wait(ctx, "SetDesiredStates"); err != nil {
		return err
	}
	return g.DB.SetDesiredStates(ctx, ids, desired)
}

// Removing an instance while a start-all that picked it is in flight must
// not crash or wedge the service: the start-all skips (or fails on) the
// removed instance and starts the rest.
func TestStartAllWithConcurrentRemove(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		db := storetest.Open(t, dialect, store.Options{})
		gs := &gatedStore{DB: db}
		e := newEnvWith(t, db, gs)
		for _, id := range []string{"wp-a", "wp-b"} {
			e.create(id, nil, procmgr.SpecInput{})
			if _, err := e.svc.Stop(tctx(t), root, id); err != nil {
				t.Fatal(err)
			}
		}
		entered, release := gs.hold("SetDesiredStates")
		defer release()
		type result struct {
			started []string
			err     error
			panic   any
		}
		done := make(chan result, 1)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					done <- result{panic: r}
				}
			}()
			started, err := e.svc.StartAll(tctx(t), root)
			done <- result{started: started.Started, err: err}
		}()
		select {
		case <-entered:
		case r := <-done:
			t.Fatalf("start-all ended before recording its intent: %+v", r)
		}
		// Actions on one instance are serialised: the remove waits for
		// start-all to finish with wp-a, then removes it.
		removed := make(chan error, 1)
		go func() { removed <- e.svc.Remove(tctx(t), root, "wp-a", false) }()
		release()
		if err := <-removed; err != nil {
			t.Fatalf("remove during start-all: %v", err)
		}
		select {
		case r := <-done:
			if r.panic != nil {
				t.Fatalf("start-all panicked on the removed instance: %v", r.panic)
			}
			t.Logf("start-all: %v, %v", r.started, r.err)
		case <-time.After(5 * time.Second):
			t.Fatalf("start-all did not return within 5s after a concurrent remove")
		}
		if e.fb.Has("wp-a") {
			t.Errorf("start-all made the removed wp-a again")
		}
		if st := e.fb.State("wp-b"); st != procmgr.StateRunning {
			t.Errorf("wp-b after start-all: %s, want running", st)
		}
	})
}

// A backend that is no procmgr.BatchStarter gets its instances started one
// at a time, through Start.
func TestStartAllWithoutBatchStarter(t *testing.T) {
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	core := struct{ instances.Backend }{fb} // the core's methods only
	svc := instances.New(db, core, instances.Options{Layout: procmgr.DefaultLayout(), Log: procmgrtest.Logger(t, slog.LevelDebug)})
	e := &env{t: t, db: db, fb: fb, svc: svc}
	e.addBarrier()
	e.run()
	for _, id := range []string{"wp-a", "wp-b"} {
		e.create(id, nil, procmgr.SpecInput{})
		if _, err := e.svc.Stop(tctx(t), root, id); err != nil {
			t.Fatal(err)
		}
	}
	e.settle()
	res, err := e.svc.StartAll(tctx(t), root)
	if err != nil {
		t.Fatal(err)
	}
	started := res.Started
	sort.Strings(started)
	if !slices.Equal(started, []string{"wp-a", "wp-b"}) {
		t.Errorf("started %v", started)
	}
	for _, id := range []procmgr.InstanceID{"wp-a", "wp-b"} {
		if e.fb.CallsFor(fakebackend.OpStart, id) != 1 || e.fb.State(id) != procmgr.StateRunning {
			t.Errorf("%s: %d starts, state %s; want one Start and running", id, e.fb.CallsFor(fakebackend.OpStart, id), e.fb.State(id))
		}
	}
	if n := e.fb.Calls(fakebackend.OpStartMany); n != 0 {
		t.Errorf("StartMany called %d times on a backend that has none", n)
	}
}

// Set is a transaction: the stored spec is always the one the instance
// runs. A backend that refuses the new settings gets the old ones back and
// nothing is recorded; a record that cannot be written puts the old
// settings back on the backend.
func TestSetIsTransactional(t *testing.T) {
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	gs := &gatedStore{DB: db}
	e := newEnvWith(t, db, gs)
	e.run()
	e.create("wp-a", nil, procmgr.SpecInput{MaxChildren: "4", MemoryMax: "300M"})
	stored := func() procmgr.Spec {
		spec, err := procmgr.UnmarshalSpec("wp-a", []byte(e.row("wp-a").Spec))
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}

	// The backend refuses a pool change.
	e.fb.FailNext(fakebackend.OpProvision, errors.New("php-fpm -t: bad config"))
	if _, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MaxChildren: "9"}); err == nil {
		t.Fatal("set succeeded although the backend refused it")
	}
	if got := stored().Pool.MaxChildren; got != 4 {
		t.Errorf("stored max_children %d after a refused set, want the old 4", got)
	}
	if spec, _ := e.fb.Spec("wp-a"); spec.Pool.MaxChildren != 4 {
		t.Errorf("backend runs max_children %d after a refused set, want the old 4", spec.Pool.MaxChildren)
	}

	// The backend takes a limits change, the record fails.
	gs.failNext("UpdateInstance", errors.New("database is locked"))
	if _, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MemoryMax: "600M"}); err == nil {
		t.Fatal("set succeeded although its record failed")
	}
	if got := stored().Limits.MemoryMax; got != 300<<20 {
		t.Errorf("stored memory_max %d, want the old 300M", got)
	}
	if spec, _ := e.fb.Spec("wp-a"); spec.Limits.MemoryMax != 300<<20 {
		t.Errorf("backend holds memory_max %d after the record failed, want the old 300M back", spec.Limits.MemoryMax)
	}
	v, err := e.svc.Get(tctx(t), root, "wp-a")
	if err != nil || v.Spec.MemoryMax != "300M" {
		t.Errorf("view after the failed record: %+v %v", v.Spec, err)
	}

	// And a set that works is stored and applied.
	if _, err := e.svc.Set(tctx(t), root, "wp-a", procmgr.SpecInput{MemoryMax: "600M"}); err != nil {
		t.Fatal(err)
	}
	if spec, _ := e.fb.Spec("wp-a"); stored().Limits.MemoryMax != 600<<20 || spec.Limits.MemoryMax != 600<<20 {
		t.Errorf("after a good set: stored %d, backend %d; want 600M both", stored().Limits.MemoryMax, spec.Limits.MemoryMax)
	}
}

// A create whose last write (recording the instance ready) fails is not left
// provisioning: the reconciler finishes it once the database answers, and
// the instance takes actions again.
func TestCreateWhoseLastWriteFailsIsFinished(t *testing.T) {
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	gs := &gatedStore{DB: db}
	e := newEnvWith(t, db, gs)
	e.run()
	gs.failNext("UpdateInstance", errors.New("database is locked"))
	// And no event from the backend follows that could wake the
	// reconciler by chance: it must come back on its own.
	e.fb.DropEvents(1000)
	if _, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "wp-a"}); err == nil {
		t.Fatal("create succeeded although recording it ready failed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.row("wp-a").Phase != instances.PhaseReady {
		if time.Now().After(deadline) {
			t.Fatalf("wp-a still %s 10 s after its last write failed", e.row("wp-a").Phase)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.svc.Stop(tctx(t), root, "wp-a"); err != nil {
		t.Errorf("stop after the create was finished: %v", err)
	}
	e.wantAudit("wp-a", "finish-create", "ok", reconciler)
}

// currentConfigs is the fake with procmgr.ConfigChecker: it says every
// config on the host is current, or none.
type currentConfigs struct {
	*fakebackend.Backend
	current bool
}

func (c currentConfigs) ConfigCurrent(procmgr.Spec) bool { return c.current }

// After a panel restart, a stopped instance whose config the backend says
// is current starts in the batch; one whose config it cannot vouch for goes
// through Provision (which writes it).
func TestStartAllAfterRestartUsesTheBatchWhenConfigsAreCurrent(t *testing.T) {
	for _, current := range []bool{true, false} {
		t.Run(fmt.Sprint("current=", current), func(t *testing.T) {
			db := storetest.Open(t, store.DialectSQLite, store.Options{})
			fb := fakebackend.New(fakebackend.Options{})
			t.Cleanup(func() { fb.Close() })
			svc := instances.New(db, currentConfigs{fb, current}, instances.Options{Layout: procmgr.DefaultLayout(), Log: procmgrtest.Logger(t, slog.LevelDebug)})
			e := &env{t: t, db: db, fb: fb, svc: svc}
			spec := e.storeRow("quiet", nil, instances.PhaseReady, instances.DesiredStopped, procmgr.SpecInput{})
			fb.Seed(spec, procmgr.StateStopped)
			e.run()
			e.idle()
			if _, err := svc.StartAll(tctx(t), root); err != nil {
				t.Fatal(err)
			}
			batch, prov := fb.CallsFor(fakebackend.OpStartMany, "quiet"), fb.CallsFor(fakebackend.OpProvision, "quiet")
			if current && (batch != 1 || prov != 0) {
				t.Errorf("config current: %d batch starts, %d provisions; want the batch", batch, prov)
			}
			if !current && (batch != 0 || prov != 1) {
				t.Errorf("config not known current: %d batch starts, %d provisions; want a provision", batch, prov)
			}
		})
	}
}
