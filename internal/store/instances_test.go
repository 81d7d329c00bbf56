package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// t0 has nanoseconds and is not in UTC, so tests see both normalisations happen.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.FixedZone("UTC+2", 2*3600))

// stored is how the store keeps t: UTC, whole microseconds.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// ts renders a time for comparison, marking any that is not in UTC.
func ts(t time.Time) string {
	if t.Location() != time.UTC {
		return "NOT-UTC:" + t.String()
	}
	return t.Format(time.RFC3339Nano)
}

func tsp(t *time.Time) string {
	if t == nil {
		return "<nil>"
	}
	return ts(*t)
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}

func instanceString(i store.Instance) string {
	return fmt.Sprintf("id=%q owner=%s cms=%q php=%q spec=%q desired=%q phase=%q gen=%d err=%q created=%s updated=%s",
		i.ID, deref(i.OwnerID), i.CMS, i.PHPVersion, i.Spec, i.DesiredState, i.Phase, i.Generation, i.LastError,
		ts(i.CreatedAt), ts(i.UpdatedAt))
}

func instanceIDs(list []store.Instance) []string {
	ids := make([]string, 0, len(list))
	for _, i := range list {
		ids = append(ids, i.ID)
	}
	return ids
}

func mustCreateUser(t *testing.T, db *store.DB, name string, uid *int) *store.User {
	t.Helper()
	u := &store.User{Name: name, Role: "customer", PasswordHash: "x", UnixUID: uid}
	if err := db.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	return u
}

func newInstance(id string, owner *uint) *store.Instance {
	return &store.Instance{
		ID: id, OwnerID: owner, CMS: "wordpress", PHPVersion: "8.2", Spec: `{"memory":"256M"}`,
		DesiredState: "running", Phase: "provisioning", Generation: 1,
	}
}

func TestInstancesCRUD(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clk := storetest.NewClock(t0)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})
		owner := mustCreateUser(t, db, "alice", nil)
		other := mustCreateUser(t, db, "bob", nil)

		a := newInstance("wp-b", &owner.ID)
		if err := db.CreateInstance(ctx, a); err != nil {
			t.Fatalf("create: %v", err)
		}
		if !a.CreatedAt.Equal(stored(t0)) || !a.UpdatedAt.Equal(stored(t0)) {
			t.Errorf("create set times %s / %s, want both %s", ts(a.CreatedAt), ts(a.UpdatedAt), ts(stored(t0)))
		}
		for _, inst := range []*store.Instance{newInstance("wp-a", nil), newInstance("dw-c", &owner.ID), newInstance("WP-B", &other.ID)} {
			if err := db.CreateInstance(ctx, inst); err != nil {
				t.Fatalf("create %s: %v", inst.ID, err)
			}
		}

		isErr(t, db.CreateInstance(ctx, newInstance("wp-b", nil)), store.ErrConflict, "create duplicate id")
		isErr(t, db.CreateInstance(ctx, newInstance("wp-x", ptr(uint(99999)))), store.ErrInvalid, "create with unknown owner")

		got, err := db.GetInstance(ctx, "wp-b")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if instanceString(*got) != instanceString(*a) {
			t.Errorf("get returned\n %s\nwant\n %s", instanceString(*got), instanceString(*a))
		}
		_, err = db.GetInstance(ctx, "nope")
		isErr(t, err, store.ErrNotFound, "get missing")

		all, err := db.ListInstances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Byte order, as in SQLite: upper case before lower case, and "WP-B" is its own id.
		if ids := instanceIDs(all); !slices.Equal(ids, []string{"WP-B", "dw-c", "wp-a", "wp-b"}) {
			t.Errorf("list = %v", ids)
		}
		mine, err := db.ListInstancesByOwner(ctx, owner.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ids := instanceIDs(mine); !slices.Equal(ids, []string{"dw-c", "wp-b"}) {
			t.Errorf("list by owner = %v", ids)
		}
		none, err := db.ListInstancesByOwner(ctx, 99999)
		if err != nil || len(none) != 0 {
			t.Errorf("list by unknown owner = %v, %v; want empty", instanceIDs(none), err)
		}

		// Update: every column but id and created_at is written, updated_at comes from the clock.
		clk.Advance(1500 * time.Millisecond)
		upd := *got
		upd.OwnerID = &other.ID
		upd.CMS, upd.PHPVersion, upd.Spec = "joomla", "8.3", `{"memory":"512M"}`
		upd.DesiredState, upd.Phase, upd.Generation, upd.LastError = "stopped", "failed", 2, "boom"
		upd.CreatedAt = time.Time{} // must not be written
		if err := db.UpdateInstance(ctx, &upd); err != nil {
			t.Fatalf("update: %v", err)
		}
		if !upd.UpdatedAt.Equal(stored(clk.Now())) {
			t.Errorf("update set UpdatedAt %s, want %s", ts(upd.UpdatedAt), ts(stored(clk.Now())))
		}
		after, err := db.GetInstance(ctx, "wp-b")
		if err != nil {
			t.Fatal(err)
		}
		want := upd
		want.CreatedAt = a.CreatedAt
		if instanceString(*after) != instanceString(want) {
			t.Errorf("after update\n %s\nwant\n %s", instanceString(*after), instanceString(want))
		}

		// Zero values are written too (clearing the owner and the error).
		after.OwnerID, after.LastError, after.Generation = nil, "", 0
		if err := db.UpdateInstance(ctx, after); err != nil {
			t.Fatalf("update to zero values: %v", err)
		}
		// The same values again at the same instant change nothing; that is not "not found".
		if err := db.UpdateInstance(ctx, after); err != nil {
			t.Fatalf("update without change: %v", err)
		}
		cleared, err := db.GetInstance(ctx, "wp-b")
		if err != nil {
			t.Fatal(err)
		}
		if cleared.OwnerID != nil || cleared.LastError != "" || cleared.Generation != 0 {
			t.Errorf("zero values not written: %s", instanceString(*cleared))
		}

		isErr(t, db.UpdateInstance(ctx, newInstance("nope", nil)), store.ErrNotFound, "update missing")
		isErr(t, db.UpdateInstance(ctx, newInstance("", nil)), store.ErrNotFound, "update empty id")
		isErr(t, db.UpdateInstance(ctx, &store.Instance{ID: "wp-a", OwnerID: ptr(uint(99999))}), store.ErrInvalid, "update to unknown owner")

		if err := db.DeleteInstance(ctx, "wp-a"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err = db.GetInstance(ctx, "wp-a")
		isErr(t, err, store.ErrNotFound, "get deleted")
		isErr(t, db.DeleteInstance(ctx, "wp-a"), store.ErrNotFound, "delete twice")
	})
}

func TestInstanceTextIsBounded(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		inst := newInstance("wp-long", nil)
		inst.LastError = strings.Repeat("x", 3*store.MaxTextBytes) + "\xff"
		if err := db.CreateInstance(ctx, inst); err != nil {
			t.Fatalf("create with long error: %v", err)
		}
		got, err := db.GetInstance(ctx, "wp-long")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.LastError) > store.MaxTextBytes || got.LastError != inst.LastError {
			t.Errorf("stored last_error of %d bytes (returned struct: %d), want at most %d and equal",
				len(got.LastError), len(inst.LastError), store.MaxTextBytes)
		}
	})
}
