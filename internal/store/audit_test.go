package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

func auditString(e store.AuditEvent) string {
	return fmt.Sprintf("id=%d at=%s actor=%q actor_id=%s action=%q instance=%q result=%q detail=%q",
		e.ID, ts(e.At), e.Actor, deref(e.ActorID), e.Action, e.InstanceID, e.Result, e.Detail)
}

func TestAuditOrderingAndLimit(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clk := storetest.NewClock(t0)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})

		var added []store.AuditEvent
		for i := range 8 {
			inst := "wp-a"
			if i%3 == 2 {
				inst = "wp-b"
			}
			ev := store.AuditEvent{Actor: "root", Action: fmt.Sprintf("act-%d", i), InstanceID: inst, Result: "ok"}
			if i == 5 {
				// An event stamped earlier than the one before it still lists in the order added.
				ev.At = t0.Add(-time.Hour)
			}
			if err := db.AddAudit(ctx, &ev); err != nil {
				t.Fatalf("add %d: %v", i, err)
			}
			if ev.ID == 0 {
				t.Fatalf("add %d: no id set", i)
			}
			added = append(added, ev)
			clk.Advance(time.Millisecond)
		}
		if !added[0].At.Equal(stored(t0)) {
			t.Errorf("At = %s, want the clock's %s", ts(added[0].At), ts(stored(t0)))
		}

		wantActions := func(evs []store.AuditEvent, want ...string) {
			t.Helper()
			var got []string
			for _, e := range evs {
				got = append(got, e.Action)
			}
			if !slices.Equal(got, want) {
				t.Errorf("actions = %v, want %v", got, want)
			}
		}
		a, err := db.ListAudit(ctx, "wp-a", 100)
		if err != nil {
			t.Fatal(err)
		}
		wantActions(a, "act-7", "act-6", "act-4", "act-3", "act-1", "act-0")
		if auditString(a[0]) != auditString(added[7]) {
			t.Errorf("round trip:\n %s\nwant\n %s", auditString(a[0]), auditString(added[7]))
		}
		b, err := db.ListAudit(ctx, "wp-b", 100)
		if err != nil {
			t.Fatal(err)
		}
		wantActions(b, "act-5", "act-2")
		if !b[0].At.Equal(stored(t0.Add(-time.Hour))) {
			t.Errorf("explicit At stored as %s", ts(b[0].At))
		}

		all, err := db.ListAudit(ctx, "", 3)
		if err != nil {
			t.Fatal(err)
		}
		wantActions(all, "act-7", "act-6", "act-5")
		for _, limit := range []int{0, -5} {
			one, err := db.ListAudit(ctx, "", limit)
			if err != nil {
				t.Fatal(err)
			}
			wantActions(one, "act-7")
		}
		none, err := db.ListAudit(ctx, "wp-none", 10)
		if err != nil || len(none) != 0 {
			t.Errorf("unknown instance: %v %v", none, err)
		}

		// The upper clamp: add enough rows in one batch to exceed it.
		batch := make([]store.AuditEvent, store.MaxAuditLimit+5)
		for i := range batch {
			batch[i] = store.AuditEvent{At: stored(t0), Actor: "bulk", Action: "bulk", InstanceID: "wp-c", Result: "ok"}
		}
		if err := db.Gorm().WithContext(ctx).CreateInBatches(batch, 200).Error; err != nil {
			t.Fatal(err)
		}
		many, err := db.ListAudit(ctx, "", 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		if len(many) != store.MaxAuditLimit {
			t.Errorf("limit 1000000 returned %d rows, want the clamp %d", len(many), store.MaxAuditLimit)
		}
	})
}

// TestTimeRoundTrip checks that every time column comes back as the same instant, in UTC, with
// microsecond precision, whatever zone and precision went in.
func TestTimeRoundTrip(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		// Far from UTC, with sub-microsecond digits that must be dropped and not rounded up.
		in := time.Date(2031, 12, 31, 23, 59, 59, 999999999, time.FixedZone("UTC-11", -11*3600))
		clk := storetest.NewClock(in)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})

		u := mustCreateUser(t, db, "tim", nil)
		inst := newInstance("wp-time", nil)
		if err := db.CreateInstance(ctx, inst); err != nil {
			t.Fatal(err)
		}
		explicit := time.Date(2026, 6, 7, 8, 9, 10, 123456789, time.FixedZone("UTC+5:30", 5*3600+1800))
		ev := store.AuditEvent{At: explicit, Actor: "tim", Action: "x", Result: "ok"}
		if err := db.AddAudit(ctx, &ev); err != nil {
			t.Fatal(err)
		}

		gotUser, err := db.GetUserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		gotInst, err := db.GetInstance(ctx, "wp-time")
		if err != nil {
			t.Fatal(err)
		}
		evs, err := db.ListAudit(ctx, "", 1)
		if err != nil {
			t.Fatal(err)
		}
		want := "2032-01-01T10:59:59.999999Z"
		for name, got := range map[string]time.Time{
			"user created_at": gotUser.CreatedAt, "user updated_at": gotUser.UpdatedAt,
			"instance created_at": gotInst.CreatedAt, "instance updated_at": gotInst.UpdatedAt,
		} {
			if ts(got) != want {
				t.Errorf("%s = %s, want %s", name, ts(got), want)
			}
		}
		if got := ts(evs[0].At); got != "2026-06-07T02:39:10.123456Z" {
			t.Errorf("audit at = %s, want 2026-06-07T02:39:10.123456Z", got)
		}

		// Nullable times round-trip too, through GORM directly.
		exp := explicit.Add(90 * 24 * time.Hour)
		tok := store.APIToken{UserID: u.ID, Name: "t", TokenHash: "h", CreatedAt: stored(in), ExpiresAt: ptr(stored(exp))}
		if err := db.Gorm().WithContext(ctx).Create(&tok).Error; err != nil {
			t.Fatal(err)
		}
		var back store.APIToken
		if err := db.Gorm().WithContext(ctx).Take(&back, "id = ?", tok.ID).Error; err != nil {
			t.Fatal(err)
		}
		if tsp(back.ExpiresAt) != ts(stored(exp)) || back.LastUsedAt != nil {
			t.Errorf("token times: expires %s, last used %s", tsp(back.ExpiresAt), tsp(back.LastUsedAt))
		}
	})
}

// hostile strings must be stored and returned as data, byte for byte.
var hostile = []string{
	`'; DROP TABLE users; --`,
	`" OR "1"="1`,
	`back\slash \\ \' \" \n`,
	"new\nline\r\ncarriage\ttab",
	"NUL\x00byte",
	"ünïcödé ✓ 日本語 🚀 \u202eRTL",
	"%s %d %v %%",
	"`backtick` $1 ? :name @var",
}

func TestHostileStringsRoundTrip(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db := storetest.Open(t, dialect, store.Options{})
		for i, s := range hostile {
			user := &store.User{Name: s, Role: "customer", PasswordHash: s}
			if err := db.CreateUser(ctx, user); err != nil {
				t.Fatalf("create user %q: %v", s, err)
			}
			gotUser, err := db.GetUserByName(ctx, s)
			if err != nil || gotUser.Name != s || gotUser.PasswordHash != s {
				t.Errorf("user %q came back as %+v, %v", s, gotUser, err)
			}

			inst := newInstance(s, &user.ID)
			inst.Spec, inst.LastError, inst.CMS = s, s, fmt.Sprintf("c%d", i)
			if err := db.CreateInstance(ctx, inst); err != nil {
				t.Fatalf("create instance %q: %v", s, err)
			}
			gotInst, err := db.GetInstance(ctx, s)
			if err != nil || gotInst.ID != s || gotInst.Spec != s || gotInst.LastError != s {
				t.Errorf("instance %q came back as %+v, %v", s, gotInst, err)
			}
			byOwner, err := db.ListInstancesByOwner(ctx, user.ID)
			if err != nil || len(byOwner) != 1 || byOwner[0].ID != s {
				t.Errorf("instances of owner %q: %v %v", s, byOwner, err)
			}

			ev := store.AuditEvent{Actor: s, Action: "x", InstanceID: s, Result: "ok", Detail: s}
			if err := db.AddAudit(ctx, &ev); err != nil {
				t.Fatalf("add audit %q: %v", s, err)
			}
			evs, err := db.ListAudit(ctx, s, 10)
			if err != nil || len(evs) != 1 || evs[0].Actor != s || evs[0].Detail != s || evs[0].InstanceID != s {
				t.Errorf("audit for %q came back as %v, %v", s, evs, err)
			}
		}
		users, err := db.ListUsers(ctx)
		if err != nil || len(users) != len(hostile) {
			t.Errorf("users table after hostile names: %d users, %v", len(users), err)
		}
		if got := tableNames(t, db); !slices.Equal(got, appTables) {
			t.Errorf("tables = %v, want %v", got, appTables)
		}
	})
}
