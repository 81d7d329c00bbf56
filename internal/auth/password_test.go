package auth_test

import (
	"encoding/base64"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$`)

// TestArgon2idFormat checks the PHC string field by field and recomputes the key with argon2
// itself, so the stored costs are the ones used.
func TestArgon2idFormat(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("alice", auth.RoleCustomer, "correct horse")
		hash := e.stored(p.UserID).PasswordHash
		m := phcRE.FindStringSubmatch(hash)
		if m == nil {
			t.Fatalf("hash %q is not $argon2id$v=19$m=64,t=1,p=1$<22 b64>$<43 b64>", hash)
		}
		salt, err1 := base64.RawStdEncoding.DecodeString(m[1])
		key, err2 := base64.RawStdEncoding.DecodeString(m[2])
		if err1 != nil || err2 != nil || len(salt) != 16 || len(key) != 32 {
			t.Fatalf("salt %d bytes (%v), key %d bytes (%v); want 16 and 32", len(salt), err1, len(key), err2)
		}
		if want := argon2.IDKey([]byte("correct horse"), salt, 1, 64, 1, 32); string(want) != string(key) {
			t.Error("stored key is not argon2id(password, salt, t=1, m=64, p=1)")
		}

		// A fresh salt each time: the same password never hashes the same twice.
		q := e.user("bob", auth.RoleCustomer, "correct horse")
		if other := e.stored(q.UserID).PasswordHash; other == hash {
			t.Error("two hashes of one password are equal")
		}
	})
}

// TestLegacyBcryptVerifiesThenIsRehashed: a bcrypt hash from before argon2id still signs in, and
// is replaced by argon2id at the first success (not at a failure).
func TestLegacyBcryptVerifiesThenIsRehashed(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		for i, variant := range []string{"$2a$", "$2b$"} {
			name := []string{"legacy-a", "legacy-b"}[i]
			h, err := bcrypt.GenerateFromPassword([]byte("old bcrypt pw"), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			old := variant + strings.TrimPrefix(string(h), "$2a$")
			u := &store.User{Name: name, Role: "customer", PasswordHash: old}
			if err := e.db.CreateUser(e.ctx, u); err != nil {
				t.Fatal(err)
			}

			if _, err := e.svc.CheckPassword(e.ctx, name, "wrong bcrypt pw"); !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("%s: wrong password = %v, want ErrBadCredentials", variant, err)
			}
			if got := e.stored(u.ID).PasswordHash; got != old {
				t.Errorf("%s: a failed check changed the hash to %q", variant, got)
			}

			sess := e.login(name, "old bcrypt pw")
			if sess.Principal.UserID != u.ID {
				t.Errorf("%s: login as %+v", variant, sess.Principal)
			}
			now := e.stored(u.ID).PasswordHash
			if !phcRE.MatchString(now) {
				t.Errorf("%s: after login the hash is %q, want argon2id at the service's costs", variant, now)
			}
			if _, err := e.svc.CheckPassword(e.ctx, name, "old bcrypt pw"); err != nil {
				t.Errorf("%s: the password after the rehash: %v", variant, err)
			}
			if _, err := e.svc.CheckPassword(e.ctx, name, "wrong bcrypt pw"); !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("%s: wrong password after the rehash = %v", variant, err)
			}
		}
	})
}

// TestOtherArgon2CostsAreRehashed: a hash at costs other than the service's is replaced after a
// successful check.
func TestOtherArgon2CostsAreRehashed(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		other := auth.NewServiceWith(e.db, nil, auth.Options{Argon2: auth.Argon2Params{MemoryKiB: 128, Time: 2, Threads: 1}})
		u, err := other.AddUser(e.ctx, "carol", auth.RoleCustomer, "correct horse", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=128,t=2,p=1$") {
			t.Fatalf("hash %q", u.PasswordHash)
		}
		if _, err := e.svc.CheckPassword(e.ctx, "carol", "correct horse"); err != nil {
			t.Fatal(err)
		}
		if got := e.stored(u.ID).PasswordHash; !phcRE.MatchString(got) {
			t.Errorf("hash after check = %q, want the service's m=64,t=1,p=1", got)
		}
	})
}

// TestTamperedHashRefused: a stored hash with costs beyond the bounds, or otherwise malformed,
// is refused at once (not computed), as an error of its own rather than bad credentials.
func TestTamperedHashRefused(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("dave", auth.RoleCustomer, "correct horse")
		good := e.stored(p.UserID).PasswordHash
		parts := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, key
		with := func(i int, v string) string {
			q := append([]string(nil), parts...)
			q[i] = v
			return strings.Join(q, "$")
		}
		bc, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cases := map[string]string{
			"memory 2 GiB":        with(3, "m=2097152,t=1,p=1"),
			"memory just over":    with(3, "m=1048577,t=1,p=1"),
			"time 1000":           with(3, "m=64,t=1000,p=1"),
			"threads 255":         with(3, "m=4096,t=1,p=255"),
			"threads 0":           with(3, "m=64,t=1,p=0"),
			"params out of order": with(3, "t=1,m=64,p=1"),
			"leading zero":        with(3, "m=064,t=1,p=1"),
			"extra param":         with(3, "m=64,t=1,p=1,x=2"),
			"version 16":          with(2, "v=16"),
			"short salt":          with(4, "AAAA"),
			"bad base64 key":      with(5, "!!!!"),
			"too many fields":     good + "$x",
			"argon2i":             strings.Replace(good, "$argon2id$", "$argon2i$", 1),
			"bcrypt cost 31":      strings.Replace(string(bc), "$04$", "$31$", 1),
			"plain text":          "correct horse",
		}
		for name, hash := range cases {
			if err := e.db.UpdateUser(e.ctx, p.UserID, store.UserUpdate{PasswordHash: &hash}); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			_, err := e.svc.CheckPassword(e.ctx, "dave", "correct horse")
			if took := time.Since(began); took > time.Second {
				t.Errorf("%s: refusing took %s; the costs were computed", name, took)
			}
			if err == nil || errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "unusable") {
				t.Errorf("%s: CheckPassword = %v, want an unusable-hash error", name, err)
			}
			if strings.Contains(err.Error(), "correct horse") {
				t.Errorf("%s: error quotes the password: %v", name, err)
			}
		}
		// The untampered hash still works, so the refusals above were about the changes.
		if err := e.db.UpdateUser(e.ctx, p.UserID, store.UserUpdate{PasswordHash: &good}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CheckPassword(e.ctx, "dave", "correct horse"); err != nil {
			t.Errorf("untampered hash: %v", err)
		}
	})
}

// TestUnknownUserCostsLikeWrongPassword measures that a missing user, a user without a
// password and an over-long password each cost one argon2id computation, like a wrong password.
func TestUnknownUserCostsLikeWrongPassword(t *testing.T) {
	// Counted, not timed: each way of failing computes exactly one argon2id
	// hash at the service's costs, as a wrong password does. (A timed
	// comparison flaps on a loaded machine.)
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		db := storetest.Open(t, dialect, store.Options{})
		s := auth.NewServiceWith(db, storetest.Logger(t), auth.Options{Argon2: tinyArgon2})
		if _, err := s.AddUser(t.Context(), "erin", auth.RoleCustomer, "correct horse", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddUser(t.Context(), "svc-x", auth.RoleCustomer, "", new(3001)); err != nil {
			t.Fatal(err)
		}
		runs := func(name, password string) uint64 {
			before := auth.Argon2Runs(s)
			_, err := s.CheckPassword(t.Context(), name, password)
			if !errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("CheckPassword(%q) = %v, want ErrBadCredentials", name, err)
			}
			return auth.Argon2Runs(s) - before
		}
		for what, n := range map[string]uint64{
			"wrong password":     runs("erin", "wrong horse"),
			"unknown user":       runs("nobody", "wrong horse"),
			"user with no hash":  runs("svc-x", "wrong horse"),
			"over-long password": runs("erin", strings.Repeat("x", auth.MaxPasswordLen+1)),
		} {
			if n != 1 {
				t.Errorf("%s computed %d argon2id hashes, want 1", what, n)
			}
		}
	})
}

// TestPasswordChecksQueue: a burst of sign-ins never runs more argon2id
// computations at once than there are CPUs (each takes 64 MiB in
// production).
func TestPasswordChecksQueue(t *testing.T) {
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	s := auth.NewServiceWith(db, storetest.Logger(t), auth.Options{Argon2: auth.Argon2Params{MemoryKiB: 4 * 1024, Time: 2, Threads: 1}})
	if _, err := s.AddUser(t.Context(), "erin", auth.RoleCustomer, "correct horse", nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 * runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.CheckPassword(t.Context(), "erin", "wrong horse")
		}()
	}
	wg.Wait()
	if peak := auth.HashPeak(s); peak > int64(runtime.NumCPU()) || peak < 1 {
		t.Errorf("%d argon2id computations ran at once, want 1..%d", peak, runtime.NumCPU())
	}
}
