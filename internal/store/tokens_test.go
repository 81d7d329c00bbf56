package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

func tokenString(t store.APIToken) string {
	return fmt.Sprintf("id=%d user=%d name=%q hash=%q prefix=%q created=%s used=%s expires=%s",
		t.ID, t.UserID, t.Name, t.TokenHash, t.TokenPrefix, ts(t.CreatedAt), tsp(t.LastUsedAt), tsp(t.ExpiresAt))
}

func TestAPITokensCRUD(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clk := storetest.NewClock(t0)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})
		alice := mustCreateUser(t, db, "alice", nil)
		bob := mustCreateUser(t, db, "bob", nil)

		a1 := &store.APIToken{UserID: alice.ID, Name: "ci", TokenHash: "hash-a1", TokenPrefix: "abcdefgh"}
		if err := db.CreateAPIToken(ctx, a1, 10); err != nil {
			t.Fatal(err)
		}
		if a1.ID == 0 || !a1.CreatedAt.Equal(stored(t0)) {
			t.Errorf("created %s", tokenString(*a1))
		}
		for name, get := range map[string]func() (*store.APIToken, error){
			"by id":   func() (*store.APIToken, error) { return db.GetAPIToken(ctx, a1.ID) },
			"by hash": func() (*store.APIToken, error) { return db.GetAPITokenByHash(ctx, "hash-a1") },
		} {
			got, err := get()
			if err != nil || tokenString(*got) != tokenString(*a1) {
				t.Errorf("get %s = %v, %v\nwant %s", name, got, err, tokenString(*a1))
			}
		}
		_, err := db.GetAPIToken(ctx, 99999)
		isErr(t, err, store.ErrNotFound, "get missing id")
		_, err = db.GetAPITokenByHash(ctx, "nope")
		isErr(t, err, store.ErrNotFound, "get missing hash")
		isErr(t, db.CreateAPIToken(ctx, &store.APIToken{UserID: bob.ID, Name: "x", TokenHash: "hash-a1"}, 10), store.ErrConflict, "duplicate hash")
		isErr(t, db.CreateAPIToken(ctx, &store.APIToken{UserID: 99999, Name: "x", TokenHash: "h"}, 10), store.ErrInvalid, "missing user")

		b1 := &store.APIToken{UserID: bob.ID, Name: "deploy", TokenHash: "hash-b1", TokenPrefix: "bbbbbbbb"}
		a2 := &store.APIToken{UserID: alice.ID, Name: "laptop", TokenHash: "hash-a2", TokenPrefix: "cccccccc"}
		for _, tok := range []*store.APIToken{b1, a2} {
			if err := db.CreateAPIToken(ctx, tok, 10); err != nil {
				t.Fatal(err)
			}
		}
		names := func(ts []store.APIToken, err error) string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var s string
			for _, tok := range ts {
				s += tok.Name + ","
			}
			return s
		}
		if got := names(db.ListAPITokens(ctx)); got != "ci,deploy,laptop," {
			t.Errorf("all = %s", got)
		}
		if got := names(db.ListUserAPITokens(ctx, alice.ID)); got != "ci,laptop," {
			t.Errorf("alice's = %s", got)
		}
		if got := names(db.ListUserAPITokens(ctx, 99999)); got != "" {
			t.Errorf("nobody's = %s", got)
		}

		used := t0.Add(time.Hour)
		if err := db.TouchAPIToken(ctx, a1.ID, used); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.GetAPIToken(ctx, a1.ID); got.LastUsedAt == nil || !got.LastUsedAt.Equal(stored(used)) {
			t.Errorf("after touch: %s", tokenString(*got))
		}
		isErr(t, db.TouchAPIToken(ctx, 99999, used), store.ErrNotFound, "touch missing")

		if err := db.DeleteAPIToken(ctx, a1.ID); err != nil {
			t.Fatal(err)
		}
		isErr(t, db.DeleteAPIToken(ctx, a1.ID), store.ErrNotFound, "delete twice")
		if got := names(db.ListAPITokens(ctx)); got != "deploy,laptop," {
			t.Errorf("after delete = %s", got)
		}
	})
}

// TestAPITokenLimit: the per-user limit holds, also when many creations race.
func TestAPITokenLimit(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db := storetest.Open(t, dialect, store.Options{})
		alice := mustCreateUser(t, db, "alice", nil)
		bob := mustCreateUser(t, db, "bob", nil)
		const limit = 5
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() {
				errs[i] = db.CreateAPIToken(ctx, &store.APIToken{UserID: alice.ID, Name: "t", TokenHash: fmt.Sprintf("h%d", i)}, limit)
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			default:
				isErr(t, err, store.ErrLimit, "past the limit")
			}
		}
		if ok != limit {
			t.Errorf("%d tokens created concurrently, want exactly %d", ok, limit)
		}
		// Another user's count is their own.
		if err := db.CreateAPIToken(ctx, &store.APIToken{UserID: bob.ID, Name: "t", TokenHash: "bob"}, limit); err != nil {
			t.Errorf("bob: %v", err)
		}
	})
}
