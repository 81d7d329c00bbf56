package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// tinyArgon2 keeps tests fast; production costs are checked in TestDefaultCostIsProduction.
var tinyArgon2 = auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}

func newService(t *testing.T, db *store.DB) *auth.Service {
	return auth.NewServiceWith(db, storetest.Logger(t), auth.Options{Argon2: tinyArgon2})
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
			{"alice", strings.Repeat("x", auth.MaxPasswordLen+1)},
			{"alice", "correct horse\x00"},
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
		wantInvalid(t, err, "password", "8 to 256")
		_, err = s.AddUser(ctx, "carol", auth.RoleAdmin, strings.Repeat("p", 257), nil)
		wantInvalid(t, err, "password", "8 to 256")
		// 256 bytes is allowed now that bcrypt's 72-byte limit is gone, and every byte counts.
		long := strings.Repeat("p", 256)
		if _, err := s.AddUser(ctx, "frank", auth.RoleCustomer, long, nil); err != nil {
			t.Errorf("AddUser with a 256-byte password: %v", err)
		} else {
			if _, err := s.CheckPassword(ctx, "frank", long); err != nil {
				t.Errorf("CheckPassword with the 256-byte password: %v", err)
			}
			if _, err := s.CheckPassword(ctx, "frank", long[:255]+"q"); !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("CheckPassword differing in byte 256 = %v, want ErrBadCredentials", err)
			}
		}
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

		// A disabled user's uid is refused: ErrUnknownUID (what the socket layer checks) and
		// ErrDisabled (what a person is told). Enabled again, it works again.
		disabled := true
		if err := db.UpdateUser(ctx, u.ID, store.UserUpdate{Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		p, err = s.PrincipalForUID(ctx, 1500)
		if !errors.Is(err, auth.ErrUnknownUID) || !errors.Is(err, auth.ErrDisabled) || p != (auth.Principal{}) {
			t.Errorf("disabled uid 1500 = %+v, %v; want ErrUnknownUID and ErrDisabled", p, err)
		}
		disabled = false
		if err := db.UpdateUser(ctx, u.ID, store.UserUpdate{Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrincipalForUID(ctx, 1500); err != nil {
			t.Errorf("re-enabled uid 1500: %v", err)
		}

		// A stored role that is not a role is refused, not guessed.
		bad := "superuser"
		if err := db.UpdateUser(ctx, u.ID, store.UserUpdate{Role: &bad}); err != nil {
			t.Fatal(err)
		}
		if p, err := s.PrincipalForUID(ctx, 1500); err == nil || p != (auth.Principal{}) {
			t.Errorf("uid with stored role %q = %+v, %v; want an error", bad, p, err)
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
	// Only the hash is checked, on SQLite: 64 MiB and 3 passes take a tenth of a second.
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	s := auth.NewService(db, nil)
	u, err := s.AddUser(context.Background(), "erin", auth.RoleAdmin, "production password", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "$argon2id$v=19$m=65536,t=3,p=2$"
	if !strings.HasPrefix(u.PasswordHash, want) {
		t.Errorf("hash %q does not start with %q", u.PasswordHash, want)
	}
	if d := auth.DefaultArgon2Params(); d != (auth.Argon2Params{MemoryKiB: 64 * 1024, Time: 3, Threads: 2}) {
		t.Errorf("DefaultArgon2Params() = %+v", d)
	}
	if _, err := s.CheckPassword(context.Background(), "erin", "production password"); err != nil {
		t.Errorf("CheckPassword at production costs: %v", err)
	}
}

func TestOptionsOutOfBoundsPanic(t *testing.T) {
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	for _, p := range []auth.Argon2Params{
		{MemoryKiB: 64, Time: 0, Threads: 1},
		{MemoryKiB: 64, Time: 1, Threads: 0},
		{MemoryKiB: 4, Time: 1, Threads: 1},
		{MemoryKiB: auth.MaxArgon2MemoryKiB + 1, Time: 1, Threads: 1},
		{MemoryKiB: 64, Time: auth.MaxArgon2Time + 1, Threads: 1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewServiceWith(%+v) did not panic", p)
				}
			}()
			auth.NewServiceWith(db, nil, auth.Options{Argon2: p})
		}()
	}
}
