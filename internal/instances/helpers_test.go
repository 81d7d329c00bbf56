package instances_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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

// The fake satisfies the interface the domain defines.
var _ instances.Backend = (*fakebackend.Backend)(nil)

// waitTimeout bounds every wait in these tests; nothing here should take
// more than a fraction of it.
const waitTimeout = 15 * time.Second

// barrierID is an instance the reconciler tests use to learn that the
// reconcile queue has been worked through up to a point.
const barrierID = "zz-barrier"

var root = auth.Principal{Name: "root", Role: auth.RoleAdmin}

// env is one test's service over a real database and the fake backend.
type env struct {
	t   *testing.T
	db  *store.DB
	fb  *fakebackend.Backend
	svc *instances.Service
}

func newEnv(t *testing.T, dialect string) *env {
	t.Helper()
	db := storetest.Open(t, dialect, store.Options{})
	return newEnvWith(t, db, db)
}

// newEnvWith makes an env whose service uses st (db wrapped, or db itself).
func newEnvWith(t *testing.T, db *store.DB, st instances.Store) *env {
	t.Helper()
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	svc := instances.New(st, fb, instances.Options{Layout: procmgr.DefaultLayout(), Log: procmgrtest.Logger(t, slog.LevelDebug)})
	return &env{t: t, db: db, fb: fb, svc: svc}
}

// ctx returns a context bounded by waitTimeout.
func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// run starts the service's Run loop and waits until it has loaded its state.
// At the end of the test the loop is stopped and must return nil.
func (e *env) run() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	e.t.Cleanup(func() {
		// Let in-flight reconciler work finish before the database closes.
		wctx, wcancel := context.WithTimeout(context.Background(), waitTimeout)
		_ = e.svc.WaitIdle(wctx)
		wcancel()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run returned %v after its context ended, want nil", err)
			}
		case <-time.After(waitTimeout):
			e.t.Errorf("Run did not return %v after its context ended", waitTimeout)
		}
	})
	select {
	case <-e.svc.Started():
	case err := <-done:
		e.t.Fatalf("Run ended before it started: %v", err)
	case <-time.After(waitTimeout):
		e.t.Fatalf("Run did not load its state within %v", waitTimeout)
	}
}

// idle waits for the service to have no action in flight.
func (e *env) idle() {
	e.t.Helper()
	if err := e.svc.WaitIdle(tctx(e.t)); err != nil {
		e.t.Fatalf("WaitIdle: %v", err)
	}
}

// addBarrier stores and seeds the barrier instance: ready, desired running,
// running. Call before run.
func (e *env) addBarrier() {
	e.t.Helper()
	spec := e.storeRow(barrierID, nil, instances.PhaseReady, instances.DesiredRunning, procmgr.SpecInput{})
	e.fb.Seed(spec, procmgr.StateRunning)
}

// syncReconciler returns once the reconciler has worked through everything
// queued before this call: it stops the barrier instance behind the panel's
// back and waits for the reconciler to provision it again. The reconcile
// set is one FIFO worked by one goroutine, and the event goes through the
// same Run loop that marked the earlier work, so by then that work is done
// (unless the barrier was still marked from before: settle's idle wait
// covers that case).
func (e *env) syncReconciler() {
	e.t.Helper()
	n := e.fb.CallsFor(fakebackend.OpProvision, barrierID)
	if _, err := e.fb.StopExternally(barrierID); err != nil {
		e.t.Fatalf("barrier: %v", err)
	}
	if err := e.fb.WaitCalls(tctx(e.t), fakebackend.OpProvision, barrierID, n+1); err != nil {
		e.t.Fatalf("barrier: the reconciler did not get to the barrier instance: %v", err)
	}
}

// settle waits until the reconciler is through with what is queued and no
// action is in flight.
func (e *env) settle() {
	e.t.Helper()
	e.syncReconciler()
	e.idle()
}

func mustSpec(t testing.TB, id string, in procmgr.SpecInput) procmgr.Spec {
	t.Helper()
	spec, err := procmgr.ParseSpec(id, in, nil)
	if err != nil {
		t.Fatalf("spec %s: %v", id, err)
	}
	return spec
}

// storeRow writes an instance row directly, as a panel that stopped
// half-way would have left it. It returns the spec stored.
func (e *env) storeRow(id string, owner *uint, phase, desired string, in procmgr.SpecInput) procmgr.Spec {
	e.t.Helper()
	spec := mustSpec(e.t, id, in)
	data, err := procmgr.MarshalSpec(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	e.storeRawRow(&store.Instance{ID: id, OwnerID: owner, CMS: string(spec.CMS), PHPVersion: string(spec.PHP),
		Spec: string(data), DesiredState: desired, Phase: phase, Generation: 1})
	return spec
}

func (e *env) storeRawRow(row *store.Instance) {
	e.t.Helper()
	if err := e.db.CreateInstance(tctx(e.t), row); err != nil {
		e.t.Fatalf("store row %s: %v", row.ID, err)
	}
}

// create makes an instance through the service as root.
func (e *env) create(id string, owner *uint, in procmgr.SpecInput) instances.View {
	e.t.Helper()
	v, err := e.svc.Create(tctx(e.t), root, instances.CreateRequest{ID: id, OwnerID: owner, Spec: in})
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return v
}

// user adds a user row and returns its principal.
func (e *env) user(name string, role auth.Role) auth.Principal {
	e.t.Helper()
	u := &store.User{Name: name, Role: string(role)}
	if err := e.db.CreateUser(tctx(e.t), u); err != nil {
		e.t.Fatalf("add user %s: %v", name, err)
	}
	return auth.Principal{UserID: u.ID, Name: name, Role: role}
}

func (e *env) row(id string) *store.Instance {
	e.t.Helper()
	r, err := e.db.GetInstance(tctx(e.t), id)
	if err != nil {
		e.t.Fatalf("row %s: %v", id, err)
	}
	return r
}

func (e *env) rowGone(id string) {
	e.t.Helper()
	if r, err := e.db.GetInstance(tctx(e.t), id); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("row %s: %+v, %v; want it deleted", id, r, err)
	}
}

// audit returns the instance's audit events, oldest first.
func (e *env) audit(id string) []store.AuditEvent {
	e.t.Helper()
	evs, err := e.db.ListAudit(tctx(e.t), id, store.MaxAuditLimit)
	if err != nil {
		e.t.Fatal(err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

// findAudit returns the first event of the action with the result.
func findAudit(evs []store.AuditEvent, action, result string) (store.AuditEvent, bool) {
	for _, ev := range evs {
		if ev.Action == action && ev.Result == result {
			return ev, true
		}
	}
	return store.AuditEvent{}, false
}

func (e *env) wantAudit(id, action, result, actor string) store.AuditEvent {
	e.t.Helper()
	evs := e.audit(id)
	for _, ev := range evs {
		if ev.Action == action && ev.Result == result && ev.Actor == actor {
			return ev
		}
	}
	e.t.Errorf("no audit %q %q by %s for %s in %s", action, result, actor, id, describeAudit(evs))
	return store.AuditEvent{}
}

func describeAudit(evs []store.AuditEvent) string {
	var b strings.Builder
	b.WriteString("[")
	for i, ev := range evs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(ev.Actor + " " + ev.Action + " " + ev.InstanceID + " " + ev.Result + " " + ev.Detail)
	}
	b.WriteString("]")
	return b.String()
}

// waitView reads views from ch until ok accepts one.
func waitView(t testing.TB, ch <-chan instances.View, what string, ok func(instances.View) bool) instances.View {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	var last instances.View
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatalf("view stream closed while waiting for %s (last %+v)", what, last.Status)
			}
			last = v
			if ok(v) {
				return v
			}
		case <-timer.C:
			t.Fatalf("no view with %s within %v (last: id %s state %s pid %d)", what, waitTimeout, last.ID, last.Status.State, last.Status.MainPID)
		}
	}
}

func subscribe(t testing.TB, svc *instances.Service) <-chan instances.View {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := svc.Subscribe(ctx)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return ch
}

func isErr(t testing.TB, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

func ptr[T any](v T) *T { return &v }
