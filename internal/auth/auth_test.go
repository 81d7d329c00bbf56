package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

func newService(t *testing.T, db *store.DB) *auth.Service {
	return auth.NewServiceWith(db, storetest.Logger(t), auth.Options{BcryptCost: bcrypt.MinCost})
}

func ptr[T any](v T) *T { return &v }

// wantInvalid fails unless err is an *auth.InvalidError for field whose message contains
// every one of words.
func wantInvalid(t *testing.T, err error, field string, words ...string) {
	t.Helper()
	var ie *auth.InvalidError
	if !errors.As(err, &ie) || !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("error = %v, want an *auth.InvalidError for %q", err, field)
		return
	}
	if ie.Field != field {
		t.Errorf("error names field %q, want %q (%v)", ie.Field, field, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"admin", "support", "customer"} {
		r, err := auth.ParseRole(s)
		if err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Admin", "root", "admin ", "superuser"} {
		_, err := auth.ParseRole(s)
		wantInvalid(t, err, "role", "admin, support, customer")
	}
}

func TestValidateUserName(t *testing.T) {
	for _, s := range []string{"ab", "alice", "a.b-c_d9", "x" + strings.Repeat("1", 31)} {
		if err := auth.ValidateUserName(s); err != nil {
			t.Errorf("ValidateUserName(%q): %v", s, err)
		}
	}
	bad := []string{
		"", "a", "x" + strings.Repeat("1", 32), "Alice", "1alice", "_alice", "-rf", "al ice", "al/ice",
		"ali\nce", "alïce", "a'; DROP TABLE users; --", "root",
	}
	for _, s := range bad {
		wantInvalid(t, auth.ValidateUserName(s), "name")
	}
	wantInvalid(t, auth.ValidateUserName("Alice"), "name", "lower-case letter")
}

func TestAddUserAndCheckPassword(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)

		u, err := s.AddUser(ctx, "alice", auth.RoleCustomer, "correct horse", nil)
		if err != nil {
			t.Fatalf("AddUser: %v", err)
		}
		if u.ID == 0 || u.Name != "alice" || u.Role != "customer" || u.UnixUID != nil {
			t.Errorf("AddUser returned %+v", u)
		}
		if u.PasswordHash == "" || strings.Contains(u.PasswordHash, "correct horse") {
			t.Errorf("password not hashed: %q", u.PasswordHash)
		}

		got, err := s.CheckPassword(ctx, "alice", "correct horse")
		if err != nil || got.ID != u.ID {
			t.Fatalf("CheckPassword(right) = %v, %v", got, err)
		}
		for _, c := range []struct{ name, password string }{
			{"alice", "wrong horse"},
			{"alice", ""},
			{"alice", strings.Repeat("x", 100)},
			{"nobody", "correct horse"},
			{"", ""},
		} {
			got, err := s.CheckPassword(ctx, c.name, c.password)
			if !errors.Is(err, auth.ErrBadCredentials) || got != nil {
				t.Errorf("CheckPassword(%q, %q) = %v, %v; want ErrBadCredentials", c.name, c.password, got, err)
			}
		}

		// A uid-only user has no password and can never sign in with one.
		svc, err := s.AddUser(ctx, "svc-deploy", auth.RoleSupport, "", ptr(2001))
		if err != nil {
			t.Fatalf("AddUser uid-only: %v", err)
		}
		if svc.PasswordHash != "" || svc.UnixUID == nil || *svc.UnixUID != 2001 {
			t.Errorf("uid-only user stored as %+v", svc)
		}
		if _, err := s.CheckPassword(ctx, "svc-deploy", ""); !errors.Is(err, auth.ErrBadCredentials) {
			t.Errorf("CheckPassword of a uid-only user = %v, want ErrBadCredentials", err)
		}

		// Duplicates are store conflicts.
		_, err = s.AddUser(ctx, "alice", auth.RoleAdmin, "another password", nil)
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate name: %v, want store.ErrConflict", err)
		}
		_, err = s.AddUser(ctx, "bob", auth.RoleAdmin, "", ptr(2001))
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate uid: %v, want store.ErrConflict", err)
		}

		// Bad input is refused before anything is stored, naming the field.
		_, err = s.AddUser(ctx, "Bad Name", auth.RoleAdmin, "long enough", nil)
		wantInvalid(t, err, "name")
		_, err = s.AddUser(ctx, "carol", auth.Role("owner"), "long enough", nil)
		wantInvalid(t, err, "role", `"owner"`)
		_, err = s.AddUser(ctx, "carol", auth.RoleAdmin, "", nil)
		wantInvalid(t, err, "password", "required")
		_, err = s.AddUser(ctx, "carol", auth.RoleAdmin, "short", nil)
		wantInvalid(t, err, "password", "8 to 72")
		_, err = s.AddUser(ctx, "carol", auth.RoleAdmin, strings.Repeat("p", 73), nil)
		wantInvalid(t, err, "password", "8 to 72")
		for _, uid := range []int{0, -1} {
			_, err = s.AddUser(ctx, "carol", auth.RoleAdmin, "", ptr(uid))
			wantInvalid(t, err, "uid", "root")
		}
		if _, err := db.GetUserByName(ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused user was stored: %v", err)
		}
	})
}

func TestPrincipalForUID(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		u, err := s.AddUser(ctx, "dave", auth.RoleCustomer, "", ptr(1500))
		if err != nil {
			t.Fatal(err)
		}

		root, err := s.PrincipalForUID(ctx, 0)
		if err != nil || root != (auth.Principal{Name: "root", Role: auth.RoleAdmin}) {
			t.Errorf("uid 0 = %+v, %v; want root admin", root, err)
		}
		if !root.CanChange() {
			t.Error("root cannot change")
		}

		p, err := s.PrincipalForUID(ctx, 1500)
		if err != nil || p != (auth.Principal{UserID: u.ID, Name: "dave", Role: auth.RoleCustomer}) {
			t.Errorf("uid 1500 = %+v, %v; want dave", p, err)
		}
		if p.CanChange() {
			t.Error("a customer can change")
		}

		for _, uid := range []int{1501, -1, 65534} {
			p, err := s.PrincipalForUID(ctx, uid)
			if !errors.Is(err, auth.ErrUnknownUID) || p != (auth.Principal{}) {
				t.Errorf("uid %d = %+v, %v; want ErrUnknownUID", uid, p, err)
			}
		}
	})
}

func TestCanChange(t *testing.T) {
	for role, want := range map[auth.Role]bool{auth.RoleAdmin: true, auth.RoleSupport: false, auth.RoleCustomer: false, "": false} {
		if got := (auth.Principal{Role: role}).CanChange(); got != want {
			t.Errorf("CanChange for %q = %v, want %v", role, got, want)
		}
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		p, err := auth.GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 20 {
			t.Fatalf("password %q has %d characters, want 20", p, len(p))
		}
		if strings.ContainsAny(p, "0Oo1lI \t'\"\\$`") {
			t.Errorf("password %q has a character outside the alphabet", p)
		}
		if seen[p] {
			t.Fatalf("password %q generated twice", p)
		}
		seen[p] = true
	}
}

func TestDefaultCostIsProduction(t *testing.T) {
	// Only the hash is checked, on SQLite: cost 12 takes a quarter second.
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	s := auth.NewService(db, nil)
	u, err := s.AddUser(context.Background(), "erin", auth.RoleAdmin, "production password", nil)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := bcrypt.Cost([]byte(u.PasswordHash))
	if err != nil || cost != auth.DefaultBcryptCost {
		t.Errorf("bcrypt cost = %d, %v; want %d", cost, err, auth.DefaultBcryptCost)
	}
}
