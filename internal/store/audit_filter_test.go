package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// TestFindAudit checks each filter field on its own and together, on both dialects.
func TestFindAudit(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		rows := []store.AuditEvent{
			{At: t0, Actor: "ann", Action: "start", InstanceID: "wp-a", Result: "ok"},
			{At: t0.Add(time.Minute), Actor: "bob", Action: "stop", InstanceID: "wp-a", Result: "ok"},
			{At: t0.Add(2 * time.Minute), Actor: "ann", Action: "stop", InstanceID: "wp-b", Result: "refused"},
			{At: t0.Add(3 * time.Minute), Actor: "ann", Action: "start", InstanceID: "wp-b", Result: "ok"},
		}
		for i := range rows {
			if err := db.AddAudit(ctx, &rows[i]); err != nil {
				t.Fatal(err)
			}
		}
		ids := func(f store.AuditFilter) []uint64 {
			t.Helper()
			evs, err := db.FindAudit(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []uint64
			for _, e := range evs {
				out = append(out, e.ID)
			}
			return out
		}
		want := func(name string, got []uint64, idx ...int) {
			t.Helper()
			if len(got) != len(idx) {
				t.Errorf("%s: got %v, want rows %v", name, got, idx)
				return
			}
			for i, k := range idx {
				if got[i] != rows[k].ID {
					t.Errorf("%s: got %v, want rows %v", name, got, idx)
					return
				}
			}
		}
		want("all", ids(store.AuditFilter{Limit: 10}), 3, 2, 1, 0)
		want("instance", ids(store.AuditFilter{InstanceID: "wp-a", Limit: 10}), 1, 0)
		want("actor", ids(store.AuditFilter{Actor: "ann", Limit: 10}), 3, 2, 0)
		want("action", ids(store.AuditFilter{Action: "stop", Limit: 10}), 2, 1)
		want("since", ids(store.AuditFilter{Since: t0.Add(2 * time.Minute), Limit: 10}), 3, 2)
		want("until", ids(store.AuditFilter{Until: t0.Add(time.Minute), Limit: 10}), 0)
		want("before", ids(store.AuditFilter{BeforeID: rows[2].ID, Limit: 10}), 1, 0)
		want("together", ids(store.AuditFilter{Actor: "ann", Action: "start", InstanceID: "wp-b", Limit: 10}), 3)
		want("limit", ids(store.AuditFilter{Limit: 1}), 3)
	})
}

// TestDeleteAuditBefore: retention deletes exactly the events older than the
// cut, on both dialects.
func TestDeleteAuditBefore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		for i := range 7 {
			ev := store.AuditEvent{At: t0.Add(time.Duration(i) * 24 * time.Hour), Actor: "ann", Action: "start", Result: "ok"}
			if err := db.AddAudit(ctx, &ev); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.DeleteAuditBefore(ctx, t0.Add(3*24*time.Hour))
		if err != nil || n != 3 {
			t.Fatalf("deleted %d, %v; want the 3 older events", n, err)
		}
		left, err := db.FindAudit(ctx, store.AuditFilter{Limit: 100})
		if err != nil || len(left) != 4 || left[len(left)-1].At.Before(t0.Add(3*24*time.Hour)) {
			t.Errorf("left %d events (%v), oldest %v", len(left), err, left)
		}
		if n, err := db.DeleteAuditBefore(ctx, t0); err != nil || n != 0 {
			t.Errorf("nothing older: deleted %d, %v", n, err)
		}
	})
}
