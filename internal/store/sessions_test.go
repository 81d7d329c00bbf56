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

func sessionString(s store.Session) string {
	return fmt.Sprintf("id=%s user=%d created=%s expires=%s seen=%s", s.ID, s.UserID, ts(s.CreatedAt), ts(s.ExpiresAt), ts(s.LastSeenAt))
}

func TestSessionsCRUD(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clk := storetest.NewClock(t0)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})
		alice := mustCreateUser(t, db, "alice", nil)
		bob := mustCreateUser(t, db, "bob", nil)

		s := &store.Session{ID: "aaaa1111", UserID: alice.ID, ExpiresAt: t0.Add(time.Hour)}
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		// Zero times come from the clock; all are stored in UTC at microseconds.
		want := store.Session{ID: "aaaa1111", UserID: alice.ID, CreatedAt: stored(t0), ExpiresAt: stored(t0.Add(time.Hour)), LastSeenAt: stored(t0)}
		if sessionString(*s) != sessionString(want) {
			t.Errorf("created\n %s\nwant\n %s", sessionString(*s), sessionString(want))
		}
		got, err := db.GetSession(ctx, "aaaa1111")
		if err != nil || sessionString(*got) != sessionString(want) {
			t.Errorf("get = %v, %v", got, err)
		}
		_, err = db.GetSession(ctx, "nope")
		isErr(t, err, store.ErrNotFound, "get missing")
		isErr(t, db.CreateSession(ctx, &store.Session{ID: "aaaa1111", UserID: bob.ID, ExpiresAt: t0}), store.ErrConflict, "duplicate id")
		isErr(t, db.CreateSession(ctx, &store.Session{ID: "orphan", UserID: 99999, ExpiresAt: t0}), store.ErrInvalid, "missing user")

		later := t0.Add(5 * time.Minute)
		if err := db.TouchSession(ctx, "aaaa1111", later); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.GetSession(ctx, "aaaa1111"); !got.LastSeenAt.Equal(stored(later)) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Errorf("after touch: %s", sessionString(*got))
		}
		isErr(t, db.TouchSession(ctx, "nope", later), store.ErrNotFound, "touch missing")

		for _, id := range []string{"b1", "b2"} {
			if err := db.CreateSession(ctx, &store.Session{ID: id, UserID: bob.ID, ExpiresAt: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.DeleteUserSessions(ctx, bob.ID)
		if err != nil || n != 2 {
			t.Errorf("DeleteUserSessions(bob) = %d, %v; want 2", n, err)
		}
		if n, err := db.DeleteUserSessions(ctx, bob.ID); err != nil || n != 0 {
			t.Errorf("again = %d, %v; want 0", n, err)
		}
		if _, err := db.GetSession(ctx, "aaaa1111"); err != nil {
			t.Errorf("alice's session went with bob's: %v", err)
		}

		if err := db.DeleteSession(ctx, "aaaa1111"); err != nil {
			t.Fatal(err)
		}
		isErr(t, db.DeleteSession(ctx, "aaaa1111"), store.ErrNotFound, "delete twice")
	})
}

// TestDeleteExpiredSessions checks both ends: the absolute one (expires_at) and the idle one
// (last_seen_at), each inclusive, at microsecond precision on both dialects.
func TestDeleteExpiredSessions(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db := storetest.Open(t, dialect, store.Options{})
		u := mustCreateUser(t, db, "alice", nil)
		now := t0
		idleBefore := now.Add(-12 * time.Hour)
		us := time.Microsecond
		rows := map[string]struct{ expires, seen time.Time }{
			"expired":         {now, now},
			"expired-long":    {now.Add(-time.Hour), now},
			"live":            {now.Add(us), idleBefore.Add(us)},
			"idle":            {now.Add(time.Hour), idleBefore},
			"idle-long":       {now.Add(time.Hour), idleBefore.Add(-time.Hour)},
			"live-far-future": {now.Add(7 * 24 * time.Hour), now},
		}
		for id, r := range rows {
			if err := db.CreateSession(ctx, &store.Session{ID: id, UserID: u.ID, CreatedAt: now.Add(-time.Hour), ExpiresAt: r.expires, LastSeenAt: r.seen}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.DeleteExpiredSessions(ctx, now, idleBefore)
		if err != nil || n != 4 {
			t.Errorf("DeleteExpiredSessions = %d, %v; want 4", n, err)
		}
		var left []string
		if err := db.Gorm().Model(&store.Session{}).Order("id").Pluck("id", &left).Error; err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(left, []string{"live", "live-far-future"}) {
			t.Errorf("left %v", left)
		}
	})
}
