package instances_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
)

// TestBeginCreate: the browser's create answers while the instance is still
// provisioning, and subscribers then see it running (or gone, with the reason).
func TestBeginCreate(t *testing.T) {
	e := newEnv(t, "sqlite")
	ann := e.user("ann", auth.RoleAdmin)
	views := subscribe(t, e.svc)
	v, err := e.svc.BeginCreate(tctx(t), ann, instances.CreateRequest{ID: "bg-1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Phase != instances.PhaseProvisioning {
		t.Errorf("BeginCreate returned phase %q, want provisioning", v.Phase)
	}
	waitView(t, views, "bg-1 running", func(v instances.View) bool {
		return v.ID == "bg-1" && v.Phase == instances.PhaseReady && v.Status.State == procmgr.StateRunning && v.Status.MainPID > 1
	})
	e.idle() // the audit record is written as the background create ends
	e.wantAudit("bg-1", "create", "ok", "ann")

	// Refusals come back at once, with nothing recorded.
	_, err = e.svc.BeginCreate(tctx(t), ann, instances.CreateRequest{ID: "bad/id"})
	isErr(t, err, instances.ErrInvalid, "invalid id")
	_, err = e.svc.BeginCreate(tctx(t), ann, instances.CreateRequest{ID: "bg-1"})
	isErr(t, err, instances.ErrConflict, "taken id")
	cust := e.user("cat", auth.RoleCustomer)
	_, err = e.svc.BeginCreate(tctx(t), cust, instances.CreateRequest{ID: "bg-2"})
	isErr(t, err, instances.ErrForbidden, "customer")
	e.rowGone("bg-2")

	// A provision that fails ends as a published removal carrying the reason.
	e.fb.FailNext(fakebackend.OpProvision, errors.New("disk full"))
	if _, err := e.svc.BeginCreate(tctx(t), ann, instances.CreateRequest{ID: "bg-3"}); err != nil {
		t.Fatal(err)
	}
	gone := waitView(t, views, "bg-3 removed", func(v instances.View) bool {
		return v.ID == "bg-3" && v.Phase == instances.PhaseRemoved
	})
	if !strings.Contains(gone.LastError, "disk full") {
		t.Errorf("removal view says %q, want the provision error", gone.LastError)
	}
	e.idle()
	e.rowGone("bg-3")
	e.wantAudit("bg-3", "create", "error", "ann")
}

// TestSetOwner: admins give instances to users; the new owner sees it, the
// old one no longer does; nobody else may.
func TestSetOwner(t *testing.T) {
	e := newEnv(t, "sqlite")
	alice := e.user("alice", auth.RoleCustomer)
	bob := e.user("bob", auth.RoleCustomer)
	e.create("site", &alice.UserID, procmgr.SpecInput{})
	v, err := e.svc.SetOwner(tctx(t), root, "site", &bob.UserID)
	if err != nil || v.OwnerID == nil || *v.OwnerID != bob.UserID {
		t.Fatalf("set owner: %v %v", v.OwnerID, err)
	}
	if r := e.row("site"); r.OwnerID == nil || *r.OwnerID != bob.UserID {
		t.Errorf("row owner %v, want bob", r.OwnerID)
	}
	if _, err := e.svc.Get(tctx(t), alice, "site"); !errors.Is(err, instances.ErrNotFound) {
		t.Errorf("old owner still sees it: %v", err)
	}
	if _, err := e.svc.Get(tctx(t), bob, "site"); err != nil {
		t.Errorf("new owner: %v", err)
	}
	_, err = e.svc.SetOwner(tctx(t), bob, "site", &bob.UserID)
	isErr(t, err, instances.ErrForbidden, "customer sets owner")
	missing := uint(99999)
	var fe *procmgr.FieldError
	if _, err := e.svc.SetOwner(tctx(t), root, "site", &missing); !errors.As(err, &fe) || fe.Field != "owner_id" {
		t.Errorf("unknown owner: %v, want a field error on owner_id", err)
	}
	if _, err := e.svc.SetOwner(tctx(t), root, "site", nil); err != nil {
		t.Errorf("no owner: %v", err)
	}
	e.wantAudit("site", "owner", "ok", "root")
}

// TestRepeatedPowerSaysNoChange: a second stop (or start) is no error, and
// its audit record says it changed nothing.
func TestRepeatedPowerSaysNoChange(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.create("site", nil, procmgr.SpecInput{})
	for _, step := range []struct {
		do     func() error
		action string
	}{
		{func() error { _, err := e.svc.Stop(tctx(t), root, "site"); return err }, "stop"},
		{func() error { _, err := e.svc.Start(tctx(t), root, "site"); return err }, "start"},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if ev := e.wantAudit("site", step.action, "ok", "root"); ev.Detail != "" {
			t.Errorf("the first %s says %q", step.action, ev.Detail)
		}
		if err := step.do(); err != nil {
			t.Fatalf("second %s: %v", step.action, err)
		}
		evs := e.audit("site")
		last := evs[len(evs)-1]
		if last.Action != step.action || !strings.HasPrefix(last.Detail, "no change: already") {
			t.Errorf("the second %s is recorded as %+v", step.action, last)
		}
	}
}

// TestRemovePurgeIsStored: while a remove --purge runs, the stored phase
// says purge, so a panel killed then finishes it as a purge.
func TestRemovePurgeIsStored(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.create("site", nil, procmgr.SpecInput{})
	entered, release := e.fb.Hold(fakebackend.OpDeprovision)
	done := make(chan error, 1)
	go func() { done <- e.svc.Remove(tctx(t), root, "site", true) }()
	<-entered
	if r := e.row("site"); r.Phase != instances.PhasePurging {
		t.Errorf("phase during remove --purge: %q, want %q", r.Phase, instances.PhasePurging)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.rowGone("site")
}
