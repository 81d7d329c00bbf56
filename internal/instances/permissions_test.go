package instances_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// permEnv has three instances: alice's, bob's and one nobody owns.
type permEnv struct {
	*env
	alice, bob, support, admin auth.Principal
}

func newPermEnv(t *testing.T, dialect string) *permEnv {
	e := newEnv(t, dialect)
	p := &permEnv{env: e,
		alice: e.user("alice", auth.RoleCustomer), bob: e.user("bob", auth.RoleCustomer),
		support: e.user("sue", auth.RoleSupport), admin: e.user("ann", auth.RoleAdmin)}
	e.create("alice-wp", &p.alice.UserID, procmgr.SpecInput{})
	e.create("bob-wp", &p.bob.UserID, procmgr.SpecInput{})
	e.create("house", nil, procmgr.SpecInput{})
	for _, id := range []procmgr.InstanceID{"alice-wp", "bob-wp", "house"} {
		if err := e.fb.AddLog(id, "NOTICE: ready to handle connections"); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestPermissionsAdmin(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		p := newPermEnv(t, dialect)
		ctx := tctx(t)
		for _, who := range []auth.Principal{root, p.admin} {
			if ids := viewIDs(p.svc.List(ctx, who)); !slices.Equal(ids, []string{"alice-wp", "bob-wp", "house"}) {
				t.Errorf("%s lists %v", who.Name, ids)
			}
		}
		a := p.admin
		for _, id := range []string{"alice-wp", "bob-wp", "house"} {
			if _, err := p.svc.Get(ctx, a, id); err != nil {
				t.Errorf("get %s: %v", id, err)
			}
			if _, err := p.svc.Stop(ctx, a, id); err != nil {
				t.Errorf("stop %s: %v", id, err)
			}
			if _, err := p.svc.Start(ctx, a, id); err != nil {
				t.Errorf("start %s: %v", id, err)
			}
			if _, err := p.svc.Restart(ctx, a, id); err != nil {
				t.Errorf("restart %s: %v", id, err)
			}
			if _, err := p.svc.Reload(ctx, a, id); err != nil {
				t.Errorf("reload %s: %v", id, err)
			}
			if _, err := p.svc.Set(ctx, a, id, procmgr.SpecInput{TasksMax: "70"}); err != nil {
				t.Errorf("set %s: %v", id, err)
			}
			if err := p.svc.Kill(ctx, a, id, "HUP"); err != nil {
				t.Errorf("kill %s: %v", id, err)
			}
			if _, err := p.svc.Health(ctx, a, id); err != nil {
				t.Errorf("health %s: %v", id, err)
			}
			if lines, err := p.svc.Logs(ctx, a, id, 10); err != nil || len(lines) != 1 {
				t.Errorf("logs %s: %v, %v", id, lines, err)
			}
		}
		if evs, err := p.svc.Audit(ctx, a, instances.AuditQuery{Instance: "", Limit: 1000}); err != nil || len(evs) == 0 {
			t.Errorf("audit of all: %d events, %v", len(evs), err)
		}
		if err := p.svc.Remove(ctx, a, "house", false); err != nil {
			t.Errorf("remove: %v", err)
		}
		if ev := p.wantAudit("alice-wp", "kill", "ok", "ann"); ev.ActorID == nil || *ev.ActorID != p.admin.UserID {
			t.Errorf("audit actor id %v", ev.ActorID)
		}
	})
}

func TestPermissionsSupport(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		p := newPermEnv(t, dialect)
		ctx := tctx(t)
		s := p.support
		if ids := viewIDs(p.svc.List(ctx, s)); !slices.Equal(ids, []string{"alice-wp", "bob-wp", "house"}) {
			t.Errorf("support lists %v", ids)
		}
		calls := p.fb.TotalCalls()
		for _, id := range []string{"alice-wp", "bob-wp", "house"} {
			if _, err := p.svc.Get(ctx, s, id); err != nil {
				t.Errorf("get %s: %v", id, err)
			}
			if h, err := p.svc.Health(ctx, s, id); err != nil || !h.Healthy {
				t.Errorf("health %s: %+v, %v", id, h, err)
			}
			if lines, err := p.svc.Logs(ctx, s, id, 5); err != nil || len(lines) != 1 {
				t.Errorf("logs %s: %v, %v", id, lines, err)
			}
			fctx, cancel := context.WithCancel(ctx)
			if ch, err := p.svc.FollowLogs(fctx, s, id, 1); err != nil {
				t.Errorf("follow %s: %v", id, err)
			} else if l := <-ch; l.Text != "NOTICE: ready to handle connections" {
				t.Errorf("follow %s: first line %q", id, l.Text)
			}
			cancel()
			if evs, err := p.svc.Audit(ctx, s, instances.AuditQuery{Instance: id, Limit: 10}); err != nil || len(evs) == 0 {
				t.Errorf("audit %s: %d events, %v", id, len(evs), err)
			}

			_, err := p.svc.Start(ctx, s, id)
			isErr(t, err, instances.ErrForbidden, "support start "+id)
			_, err = p.svc.Stop(ctx, s, id)
			isErr(t, err, instances.ErrForbidden, "support stop "+id)
			_, err = p.svc.Restart(ctx, s, id)
			isErr(t, err, instances.ErrForbidden, "support restart "+id)
			_, err = p.svc.Reload(ctx, s, id)
			isErr(t, err, instances.ErrForbidden, "support reload "+id)
			_, err = p.svc.Set(ctx, s, id, procmgr.SpecInput{MaxChildren: "2"})
			isErr(t, err, instances.ErrForbidden, "support set "+id)
			isErr(t, p.svc.Kill(ctx, s, id, "TERM"), instances.ErrForbidden, "support kill "+id)
			isErr(t, p.svc.Remove(ctx, s, id, true), instances.ErrForbidden, "support remove "+id)
		}
		_, err := p.svc.Create(ctx, s, instances.CreateRequest{ID: "sue-wp"})
		isErr(t, err, instances.ErrForbidden, "support create")
		if evs, err := p.svc.Audit(ctx, s, instances.AuditQuery{Instance: "", Limit: 100}); err != nil || len(evs) == 0 {
			t.Errorf("support audit of all: %d, %v", len(evs), err)
		}
		assertNoChangingCalls(t, p.fb, calls)
		for _, id := range []string{"alice-wp", "bob-wp", "house"} {
			if r := p.row(id); r.DesiredState != instances.DesiredRunning || r.Generation != 2 {
				t.Errorf("support's refused actions changed %s: desired %q generation %d", id, r.DesiredState, r.Generation)
			}
		}
		// Support's start-all starts nothing.
		if started, err := p.svc.StartAll(ctx, s); err != nil || len(started.Started) != 0 {
			t.Errorf("support start-all: %v, %v", started, err)
		}
	})
}

func TestPermissionsCustomer(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		p := newPermEnv(t, dialect)
		ctx := tctx(t)
		c := p.alice
		if ids := viewIDs(p.svc.List(ctx, c)); !slices.Equal(ids, []string{"alice-wp"}) {
			t.Errorf("alice lists %v, want only alice-wp", ids)
		}
		if ids := viewIDs(p.svc.List(ctx, p.bob)); !slices.Equal(ids, []string{"bob-wp"}) {
			t.Errorf("bob lists %v, want only bob-wp", ids)
		}

		// Someone else's instance, and one nobody owns, do not exist for her:
		// every action says not found, never forbidden.
		calls := p.fb.TotalCalls()
		for _, id := range []string{"bob-wp", "house"} {
			_, err := p.svc.Get(ctx, c, id)
			isErr(t, err, instances.ErrNotFound, "get "+id)
			if errors.Is(err, instances.ErrForbidden) {
				t.Errorf("get %s tells alice it exists: %v", id, err)
			}
			_, err = p.svc.Start(ctx, c, id)
			isErr(t, err, instances.ErrNotFound, "start "+id)
			_, err = p.svc.Stop(ctx, c, id)
			isErr(t, err, instances.ErrNotFound, "stop "+id)
			_, err = p.svc.Restart(ctx, c, id)
			isErr(t, err, instances.ErrNotFound, "restart "+id)
			_, err = p.svc.Health(ctx, c, id)
			isErr(t, err, instances.ErrNotFound, "health "+id)
			_, err = p.svc.Logs(ctx, c, id, 5)
			isErr(t, err, instances.ErrNotFound, "logs "+id)
			_, err = p.svc.FollowLogs(ctx, c, id, 5)
			isErr(t, err, instances.ErrNotFound, "follow "+id)
			_, err = p.svc.Audit(ctx, c, instances.AuditQuery{Instance: id, Limit: 5})
			isErr(t, err, instances.ErrNotFound, "audit "+id)
			isErr(t, p.svc.Kill(ctx, c, id, "TERM"), instances.ErrNotFound, "kill "+id)
			isErr(t, p.svc.Remove(ctx, c, id, false), instances.ErrNotFound, "remove "+id)
			_, err = p.svc.Set(ctx, c, id, procmgr.SpecInput{})
			isErr(t, err, instances.ErrNotFound, "set "+id)
		}
		// Her own: power and read, not manage.
		_, err := p.svc.Create(ctx, c, instances.CreateRequest{ID: "alice-two", OwnerID: &c.UserID})
		isErr(t, err, instances.ErrForbidden, "customer create")
		_, err = p.svc.Set(ctx, c, "alice-wp", procmgr.SpecInput{MemoryMax: "4G"})
		isErr(t, err, instances.ErrForbidden, "customer set")
		isErr(t, p.svc.Kill(ctx, c, "alice-wp", "KILL"), instances.ErrForbidden, "customer kill")
		isErr(t, p.svc.Remove(ctx, c, "alice-wp", true), instances.ErrForbidden, "customer remove")
		_, err = p.svc.Audit(ctx, c, instances.AuditQuery{Instance: "", Limit: 100})
		isErr(t, err, instances.ErrForbidden, "customer audit of all")
		assertNoChangingCalls(t, p.fb, calls)
		// Every refused attempt on an instance that exists is on record,
		// with who tried and what (written without making the caller wait).
		p.idle()
		for _, id := range []string{"bob-wp"} {
			evs := p.audit(id)
			for _, action := range []string{"view", "start", "stop", "restart", "health", "logs", "audit", "kill", "remove", "set"} {
				if ev, ok := findAudit(evs, action, instances.ResultRefused); !ok || ev.Actor != "alice" {
					t.Errorf("alice's refused %s on %s is not audited: %s", action, id, describeAudit(evs))
				}
			}
		}
		// Bob's own trail of his instance does not tell him who probed it.
		bobs, err := p.svc.Audit(ctx, p.bob, instances.AuditQuery{Instance: "bob-wp", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range bobs {
			if ev.Result == instances.ResultRefused {
				t.Errorf("bob's trail shows someone else's refused attempt: %+v", ev)
			}
		}
		if sup, _ := p.svc.Audit(ctx, p.support, instances.AuditQuery{Instance: "bob-wp", Limit: 100}); len(sup) <= len(bobs) {
			t.Errorf("support sees %d records of bob-wp, bob %d: staff must see the refusals", len(sup), len(bobs))
		}
		ownEvs := p.audit("alice-wp")
		for _, action := range []string{"set", "kill", "remove"} {
			if _, ok := findAudit(ownEvs, action, instances.ResultRefused); !ok {
				t.Errorf("alice's forbidden %s of her own instance is not audited as refused: %s", action, describeAudit(ownEvs))
			}
		}
		if n := p.fb.CallsFor(fakebackend.OpHealth, "bob-wp") + p.fb.CallsFor(fakebackend.OpLogs, "bob-wp"); n != 0 {
			t.Errorf("alice's reads of bob's instance reached the backend")
		}

		if v, err := p.svc.Get(ctx, c, "alice-wp"); err != nil || v.ID != "alice-wp" {
			t.Errorf("get own: %v", err)
		}
		if v, err := p.svc.Stop(ctx, c, "alice-wp"); err != nil || v.Desired != instances.DesiredStopped {
			t.Errorf("stop own: %v", err)
		}
		if v, err := p.svc.Start(ctx, c, "alice-wp"); err != nil || v.Status.State != procmgr.StateRunning {
			t.Errorf("start own: %v", err)
		}
		if _, err := p.svc.Restart(ctx, c, "alice-wp"); err != nil {
			t.Errorf("restart own: %v", err)
		}
		if _, err := p.svc.Reload(ctx, c, "alice-wp"); err != nil {
			t.Errorf("reload own: %v", err)
		}
		if _, err := p.svc.Health(ctx, c, "alice-wp"); err != nil {
			t.Errorf("health own: %v", err)
		}
		if lines, err := p.svc.Logs(ctx, c, "alice-wp", 5); err != nil || len(lines) != 1 {
			t.Errorf("logs own: %v, %v", lines, err)
		}
		entries, err := p.svc.Audit(ctx, c, instances.AuditQuery{Instance: "alice-wp", Limit: 100})
		if err != nil {
			t.Fatalf("audit own: %v", err)
		}
		evs := asStoreEvents(entries)
		if ev, ok := findAudit(evs, "stop", "ok"); !ok || ev.Actor != "alice" || ev.ActorID == nil || *ev.ActorID != c.UserID {
			t.Errorf("own audit lacks alice's stop: %s", describeAudit(evs))
		}
		for _, ev := range evs {
			if ev.InstanceID != "alice-wp" {
				t.Errorf("alice's audit shows %+v", ev)
			}
		}
	})
}

func TestPermissionsUnknownRole(t *testing.T) {
	e := newPermEnv(t, "sqlite")
	ctx := tctx(t)
	for _, p := range []auth.Principal{{Name: "ghost"}, {Name: "odd", Role: "superuser", UserID: e.alice.UserID}} {
		if l := e.svc.List(ctx, p); len(l) != 0 {
			t.Errorf("%s lists %v", p.Name, viewIDs(l))
		}
		_, err := e.svc.Get(ctx, p, "alice-wp")
		isErr(t, err, instances.ErrNotFound, p.Name+" get")
		_, err = e.svc.Start(ctx, p, "alice-wp")
		isErr(t, err, instances.ErrNotFound, p.Name+" start")
		_, err = e.svc.Audit(ctx, p, instances.AuditQuery{Instance: "", Limit: 10})
		isErr(t, err, instances.ErrForbidden, p.Name+" audit")
	}
}

func TestCanSeeAndSubscribe(t *testing.T) {
	e := newPermEnv(t, "sqlite")
	alice, bob, sup := e.alice, e.bob, e.support
	views := subscribe(t, e.svc)
	if _, err := e.svc.Stop(tctx(t), root, "alice-wp"); err != nil {
		t.Fatal(err)
	}
	v := waitView(t, views, "alice-wp stopped", func(v instances.View) bool {
		return v.ID == "alice-wp" && v.Status.State == procmgr.StateStopped
	})
	if !instances.CanSee(alice, v) || instances.CanSee(bob, v) || !instances.CanSee(sup, v) || !instances.CanSee(root, v) {
		t.Errorf("CanSee of alice's view: alice %v bob %v support %v root %v", instances.CanSee(alice, v),
			instances.CanSee(bob, v), instances.CanSee(sup, v), instances.CanSee(root, v))
	}
	house, _ := e.svc.Get(tctx(t), root, "house")
	if instances.CanSee(alice, house) || !instances.CanSee(sup, house) || instances.CanSee(auth.Principal{Name: "x"}, house) {
		t.Errorf("CanSee of an unowned view is wrong")
	}
}

// assertNoChangingCalls fails if any state-changing backend call happened
// since the history had calls entries.
func assertNoChangingCalls(t *testing.T, fb *fakebackend.Backend, calls int) {
	t.Helper()
	if n := fb.TotalCalls(); n != calls {
		t.Errorf("refused actions reached the backend: %d state-changing calls, want %d: %+v", n, calls, fb.History())
	}
}

func asStoreEvents(in []instances.AuditEntry) []store.AuditEvent {
	out := make([]store.AuditEvent, len(in))
	for i, e := range in {
		out[i] = store.AuditEvent{ID: e.ID, At: e.At, Actor: e.Actor, ActorID: e.ActorID, Action: e.Action,
			InstanceID: e.InstanceID, Result: e.Result, Detail: e.Detail}
	}
	return out
}
