package auth_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// start is the fake clock's first reading.
var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// env is one real database of a dialect with a service on a fake clock shared by both.
type env struct {
	t   *testing.T
	ctx context.Context
	db  *store.DB
	clk *storetest.Clock
	svc *auth.Service
}

// run runs fn once per dialect, each with a fresh env.
func run(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		clk := storetest.NewClock(start)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})
		svc := auth.NewServiceWith(db, storetest.Logger(t), auth.Options{Argon2: tinyArgon2, Now: clk.Now})
		fn(t, &env{t: t, ctx: context.Background(), db: db, clk: clk, svc: svc})
	})
}

// user adds a user with a password and returns its principal.
func (e *env) user(name string, role auth.Role, password string) auth.Principal {
	e.t.Helper()
	u, err := e.svc.AddUser(e.ctx, name, role, password, nil)
	if err != nil {
		e.t.Fatalf("add user %s: %v", name, err)
	}
	return auth.Principal{UserID: u.ID, Name: name, Role: role}
}

// stored returns the user's row.
func (e *env) stored(id uint) *store.User {
	e.t.Helper()
	u, err := e.db.GetUserByID(e.ctx, id)
	if err != nil {
		e.t.Fatalf("get user %d: %v", id, err)
	}
	return u
}

// login signs in and fails the test on error.
func (e *env) login(name, password string) auth.Session {
	e.t.Helper()
	s, err := e.svc.Login(e.ctx, name, password, netip.MustParseAddr("192.0.2.10"))
	if err != nil {
		e.t.Fatalf("login %s: %v", name, err)
	}
	return s
}

// sessions counts the user's stored sessions.
func (e *env) sessions(userID uint) int64 {
	e.t.Helper()
	var n int64
	if err := e.db.Gorm().WithContext(e.ctx).Model(&store.Session{}).Where("user_id = ?", userID).Count(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return n
}

// audit returns the audit records of one action, oldest first.
func (e *env) audit(action string) []store.AuditEvent {
	e.t.Helper()
	all, err := e.db.ListAudit(e.ctx, "", store.MaxAuditLimit)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditEvent
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Action == action {
			out = append(out, all[i])
		}
	}
	return out
}

// lastAudit returns the newest audit record of the action, failing the test without one.
func (e *env) lastAudit(action string) store.AuditEvent {
	e.t.Helper()
	evs := e.audit(action)
	if len(evs) == 0 {
		e.t.Fatalf("no audit record for %q", action)
	}
	return evs[len(evs)-1]
}

// wantAudit fails unless ev has the actor and result and its detail holds every word.
func wantAudit(t *testing.T, ev store.AuditEvent, actor, result string, words ...string) {
	t.Helper()
	if ev.Actor != actor || ev.Result != result || ev.InstanceID != "" {
		t.Errorf("audit %s: actor %q result %q instance %q; want %q %q \"\" (detail %q)",
			ev.Action, ev.Actor, ev.Result, ev.InstanceID, actor, result, ev.Detail)
	}
	for _, w := range words {
		if !strings.Contains(ev.Detail, w) {
			t.Errorf("audit %s detail %q does not mention %q", ev.Action, ev.Detail, w)
		}
	}
}
