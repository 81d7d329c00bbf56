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

func userString(u store.User) string {
	return fmt.Sprintf("id=%d name=%q role=%q hash=%q uid=%s disabled=%v created=%s updated=%s",
		u.ID, u.Name, u.Role, u.PasswordHash, deref(u.UnixUID), u.Disabled, ts(u.CreatedAt), ts(u.UpdatedAt))
}

func TestUsersCRUD(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clk := storetest.NewClock(t0)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})

		carol := &store.User{Name: "carol", Role: "admin", PasswordHash: "$2a$12$hash", UnixUID: ptr(1001)}
		if err := db.CreateUser(ctx, carol); err != nil {
			t.Fatalf("create: %v", err)
		}
		if carol.ID == 0 {
			t.Fatal("create did not set the id")
		}
		if !carol.CreatedAt.Equal(stored(t0)) || !carol.UpdatedAt.Equal(stored(t0)) {
			t.Errorf("create set times %s / %s, want %s", ts(carol.CreatedAt), ts(carol.UpdatedAt), ts(stored(t0)))
		}
		// Two users without a uid (NULL) do not collide.
		alice := &store.User{Name: "alice", Role: "customer", PasswordHash: "h1"}
		bob := &store.User{Name: "bob", Role: "support", PasswordHash: "h2"}
		for _, u := range []*store.User{alice, bob} {
			if err := db.CreateUser(ctx, u); err != nil {
				t.Fatalf("create %s: %v", u.Name, err)
			}
		}
		if !(carol.ID < alice.ID && alice.ID < bob.ID) {
			t.Errorf("ids not increasing: %d %d %d", carol.ID, alice.ID, bob.ID)
		}

		err := db.CreateUser(ctx, &store.User{Name: "carol", Role: "customer"})
		isErr(t, err, store.ErrConflict, "duplicate name")
		if err != nil && !strings.Contains(err.Error(), "name is taken") {
			t.Errorf("duplicate name error does not say what: %v", err)
		}
		err = db.CreateUser(ctx, &store.User{Name: "dave", Role: "customer", UnixUID: ptr(1001)})
		isErr(t, err, store.ErrConflict, "duplicate uid")
		if err != nil && !strings.Contains(err.Error(), "unix uid 1001") {
			t.Errorf("duplicate uid error does not say what: %v", err)
		}
		// Names are compared byte-wise on both dialects.
		if err := db.CreateUser(ctx, &store.User{Name: "Carol", Role: "customer"}); err != nil {
			t.Errorf("create Carol next to carol: %v", err)
		}

		for name, get := range map[string]func() (*store.User, error){
			"by name": func() (*store.User, error) { return db.GetUserByName(ctx, "carol") },
			"by id":   func() (*store.User, error) { return db.GetUserByID(ctx, carol.ID) },
			"by uid":  func() (*store.User, error) { return db.GetUserByUnixUID(ctx, 1001) },
		} {
			got, err := get()
			if err != nil {
				t.Errorf("get %s: %v", name, err)
				continue
			}
			if userString(*got) != userString(*carol) {
				t.Errorf("get %s returned\n %s\nwant\n %s", name, userString(*got), userString(*carol))
			}
		}
		_, err = db.GetUserByName(ctx, "nobody")
		isErr(t, err, store.ErrNotFound, "get missing name")
		_, err = db.GetUserByID(ctx, 99999)
		isErr(t, err, store.ErrNotFound, "get missing id")
		_, err = db.GetUserByUnixUID(ctx, 4242)
		isErr(t, err, store.ErrNotFound, "get missing uid")

		users, err := db.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range users {
			names = append(names, u.Name)
		}
		if !slices.Equal(names, []string{"Carol", "alice", "bob", "carol"}) {
			t.Errorf("list = %v", names)
		}

		if err := db.DeleteUser(ctx, bob.ID); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err = db.GetUserByID(ctx, bob.ID)
		isErr(t, err, store.ErrNotFound, "get deleted")
		isErr(t, db.DeleteUser(ctx, bob.ID), store.ErrNotFound, "delete twice")
		// A deleted user's id is not handed out again.
		eve := &store.User{Name: "eve", Role: "customer"}
		if err := db.CreateUser(ctx, eve); err != nil {
			t.Fatal(err)
		}
		if eve.ID <= bob.ID {
			t.Errorf("new user got id %d, not above deleted id %d", eve.ID, bob.ID)
		}
	})
}

// TestDeleteUserCascades checks the foreign keys: sessions and API tokens go with their user,
// instances stay without an owner, audit events stay untouched.
func TestDeleteUserCascades(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db := storetest.Open(t, dialect, store.Options{})
		g := db.Gorm().WithContext(ctx)
		alice := mustCreateUser(t, db, "alice", nil)
		bob := mustCreateUser(t, db, "bob", nil)

		now := time.Now().UTC()
		for i, u := range []*store.User{alice, alice, bob} {
			s := store.Session{ID: fmt.Sprintf("sess-%d", i), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeenAt: now}
			if err := g.Create(&s).Error; err != nil {
				t.Fatalf("create session: %v", err)
			}
			tok := store.APIToken{UserID: u.ID, Name: "ci", TokenHash: fmt.Sprintf("hash-%d", i), CreatedAt: now}
			if err := g.Create(&tok).Error; err != nil {
				t.Fatalf("create token: %v", err)
			}
		}
		// A session for a user that does not exist is refused: foreign keys are enforced.
		if err := g.Create(&store.Session{ID: "orphan", UserID: 99999, CreatedAt: now, ExpiresAt: now, LastSeenAt: now}).Error; err == nil {
			t.Error("session for a missing user was accepted; foreign keys are not enforced")
		}
		for _, inst := range []*store.Instance{newInstance("a-1", &alice.ID), newInstance("b-1", &bob.ID)} {
			if err := db.CreateInstance(ctx, inst); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.AddAudit(ctx, &store.AuditEvent{Actor: "alice", ActorID: &alice.ID, Action: "start", InstanceID: "a-1", Result: "ok"}); err != nil {
			t.Fatal(err)
		}

		if err := db.DeleteUser(ctx, alice.ID); err != nil {
			t.Fatalf("delete alice: %v", err)
		}

		count := func(model any, where string, args ...any) int64 {
			t.Helper()
			var n int64
			if err := g.Model(model).Where(where, args...).Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(&store.Session{}, "user_id = ?", alice.ID); n != 0 {
			t.Errorf("%d sessions of the deleted user remain", n)
		}
		if n := count(&store.APIToken{}, "user_id = ?", alice.ID); n != 0 {
			t.Errorf("%d API tokens of the deleted user remain", n)
		}
		if n := count(&store.Session{}, "user_id = ?", bob.ID); n != 1 {
			t.Errorf("bob has %d sessions, want 1 (untouched)", n)
		}
		if n := count(&store.APIToken{}, "user_id = ?", bob.ID); n != 1 {
			t.Errorf("bob has %d API tokens, want 1 (untouched)", n)
		}
		a1, err := db.GetInstance(ctx, "a-1")
		if err != nil {
			t.Fatalf("instance of the deleted user: %v", err)
		}
		if a1.OwnerID != nil {
			t.Errorf("instance still owned by deleted user %d", *a1.OwnerID)
		}
		b1, err := db.GetInstance(ctx, "b-1")
		if err != nil || b1.OwnerID == nil || *b1.OwnerID != bob.ID {
			t.Errorf("bob's instance changed: %v %v", b1, err)
		}
		evs, err := db.ListAudit(ctx, "a-1", 10)
		if err != nil || len(evs) != 1 || evs[0].ActorID == nil || *evs[0].ActorID != alice.ID {
			t.Errorf("audit event of the deleted user: %v %v", evs, err)
		}

		// Deleting an instance leaves its audit events.
		if err := db.DeleteInstance(ctx, "a-1"); err != nil {
			t.Fatal(err)
		}
		if evs, err := db.ListAudit(ctx, "a-1", 10); err != nil || len(evs) != 1 {
			t.Errorf("audit after instance delete: %d events, %v; want 1", len(evs), err)
		}
	})
}

func TestUpdateUser(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clk := storetest.NewClock(t0)
		db := storetest.Open(t, dialect, store.Options{Now: clk.Now})
		alice := mustCreateUser(t, db, "alice", ptr(1200))
		bob := mustCreateUser(t, db, "bob", nil)
		if alice.Disabled {
			t.Error("a new user is disabled")
		}
		bobBefore := userString(*bob)

		get := func(id uint) store.User {
			t.Helper()
			u, err := db.GetUserByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return *u
		}

		// Each field alone changes only itself (and updated_at).
		clk.Advance(time.Minute)
		if err := db.UpdateUser(ctx, alice.ID, store.UserUpdate{Disabled: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		want := *alice
		want.Disabled, want.UpdatedAt = true, stored(t0.Add(time.Minute))
		if got := get(alice.ID); userString(got) != userString(want) {
			t.Errorf("after disable\n %s\nwant\n %s", userString(got), userString(want))
		}
		clk.Advance(time.Minute)
		if err := db.UpdateUser(ctx, alice.ID, store.UserUpdate{Role: ptr("admin")}); err != nil {
			t.Fatal(err)
		}
		want.Role, want.UpdatedAt = "admin", stored(t0.Add(2*time.Minute))
		if got := get(alice.ID); userString(got) != userString(want) {
			t.Errorf("after role\n %s\nwant\n %s", userString(got), userString(want))
		}
		if err := db.UpdateUser(ctx, alice.ID, store.UserUpdate{PasswordHash: ptr("h2"), Disabled: ptr(false)}); err != nil {
			t.Fatal(err)
		}
		want.PasswordHash, want.Disabled = "h2", false
		if got := get(alice.ID); userString(got) != userString(want) {
			t.Errorf("after hash\n %s\nwant\n %s", userString(got), userString(want))
		}
		// Setting what is stored already is fine (MySQL counts matched rows, not changed ones).
		if err := db.UpdateUser(ctx, alice.ID, store.UserUpdate{Role: ptr("admin")}); err != nil {
			t.Errorf("no-op update: %v", err)
		}

		// The conditional hash update: only while the stored hash is the one given.
		err := db.UpdateUser(ctx, alice.ID, store.UserUpdate{PasswordHash: ptr("h3"), IfPasswordHash: ptr("stale")})
		isErr(t, err, store.ErrConflict, "stale IfPasswordHash")
		if got := get(alice.ID).PasswordHash; got != "h2" {
			t.Errorf("a refused conditional update stored %q", got)
		}
		if err := db.UpdateUser(ctx, alice.ID, store.UserUpdate{PasswordHash: ptr("h3"), IfPasswordHash: ptr("h2")}); err != nil {
			t.Errorf("matching IfPasswordHash: %v", err)
		}
		if got := get(alice.ID).PasswordHash; got != "h3" {
			t.Errorf("hash %q, want h3", got)
		}

		isErr(t, db.UpdateUser(ctx, 99999, store.UserUpdate{Role: ptr("admin")}), store.ErrNotFound, "update missing")
		isErr(t, db.UpdateUser(ctx, 99999, store.UserUpdate{PasswordHash: ptr("x"), IfPasswordHash: ptr("y")}),
			store.ErrNotFound, "conditional update of a missing user")
		if got := get(bob.ID); userString(got) != bobBefore {
			t.Errorf("bob changed:\n %s\nwas\n %s", userString(got), bobBefore)
		}

		// A user created disabled is stored so.
		carol := &store.User{Name: "carol", Role: "customer", Disabled: true}
		if err := db.CreateUser(ctx, carol); err != nil {
			t.Fatal(err)
		}
		if !get(carol.ID).Disabled {
			t.Error("created disabled, read back enabled")
		}
		users, err := db.ListUsers(ctx)
		if err != nil || len(users) != 3 || users[2].Name != "carol" || !users[2].Disabled {
			t.Errorf("ListUsers = %v, %v", users, err)
		}
	})
}
