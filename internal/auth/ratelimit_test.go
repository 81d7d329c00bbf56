package auth_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
)

// wantLimited fails unless err is a *RateLimitError asking to wait retry.
func wantLimited(t *testing.T, err error, retry time.Duration, what string) {
	t.Helper()
	var rl *auth.RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, auth.ErrRateLimited) {
		t.Errorf("%s: error = %v, want a *RateLimitError", what, err)
		return
	}
	if rl.RetryAfter != retry {
		t.Errorf("%s: RetryAfter = %s, want %s", what, rl.RetryAfter, retry)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestRateLimitPerAccount: five failures for a name within 15 minutes lock that name (from any
// address) without the password being checked; other names are unaffected; the lock lifts as
// the failures age out.
func TestRateLimitPerAccount(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		// alice's hash is bcrypt: a checked right password would replace it, so an unchanged
		// hash proves that a limited sign-in did not check the password.
		h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		alice := &store.User{Name: "alice", Role: "customer", PasswordHash: string(h)}
		if err := e.db.CreateUser(e.ctx, alice); err != nil {
			t.Fatal(err)
		}
		e.user("bob", auth.RoleCustomer, "bob's password")

		for i := range auth.MaxAccountFailures {
			_, err := e.svc.Login(e.ctx, "alice", "wrong horse", addr(fmt.Sprintf("198.51.100.%d", i+1)))
			if !errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
			e.clk.Advance(time.Minute)
		}
		// The right password, from a fresh address, is refused without being checked.
		_, err = e.svc.Login(e.ctx, "alice", "correct horse", addr("203.0.113.7"))
		wantLimited(t, err, auth.FailureWindow-5*time.Minute, "sixth attempt")
		if got := e.stored(alice.ID).PasswordHash; got != string(h) {
			t.Errorf("a limited sign-in checked the password (hash now %q)", got)
		}
		wantAudit(t, e.lastAudit("login"), "alice", "refused", "rate limited", "203.0.113.7")

		// Another name from the same addresses is not limited.
		if _, err := e.svc.Login(e.ctx, "bob", "bob's password", addr("198.51.100.1")); err != nil {
			t.Errorf("bob: %v", err)
		}

		// When the first failure leaves the window, one more attempt is allowed.
		e.clk.Advance(auth.FailureWindow - 5*time.Minute)
		if _, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("203.0.113.7")); err != nil {
			t.Fatalf("after the window: %v", err)
		}
		if got := e.stored(alice.ID).PasswordHash; !strings.HasPrefix(got, "$argon2id$") {
			t.Errorf("the checked login did not rehash: %q", got)
		}
	})
}

// TestSuccessClearsAccountFailures: a successful sign-in forgets the name's failures.
func TestSuccessClearsAccountFailures(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		for round := range 3 {
			for i := range auth.MaxAccountFailures - 1 {
				_, err := e.svc.Login(e.ctx, "alice", "wrong horse", addr(fmt.Sprintf("198.51.100.%d", 10*round+i)))
				if !errors.Is(err, auth.ErrBadCredentials) {
					t.Fatalf("round %d failure %d: %v", round, i, err)
				}
			}
			if _, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("203.0.113.1")); err != nil {
				t.Fatalf("round %d: success refused: %v", round, err)
			}
		}
	})
}

// TestRateLimitPerAddress: twenty failures from one address (any names) lock that address; IPv4
// arriving IPv4-mapped counts as the same address; other addresses are unaffected.
func TestRateLimitPerAddress(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		for i := range auth.MaxAddressFailures {
			from := "192.0.2.1"
			if i%2 == 1 {
				from = "::ffff:192.0.2.1"
			}
			_, err := e.svc.Login(e.ctx, fmt.Sprintf("guess%d", i), "whatever1", addr(from))
			if !errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
		_, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("192.0.2.1"))
		wantLimited(t, err, auth.FailureWindow, "right password from the address")
		_, err = e.svc.Login(e.ctx, "alice", "correct horse", addr("::ffff:192.0.2.1"))
		wantLimited(t, err, auth.FailureWindow, "right password from the mapped address")
		if _, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("192.0.2.2")); err != nil {
			t.Errorf("another address: %v", err)
		}
	})
}

// TestRateLimitIPv6PerSlash64: IPv6 clients are counted per /64, so hopping addresses inside
// one's own /64 does not help.
func TestRateLimitIPv6PerSlash64(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		for i := range auth.MaxAddressFailures {
			from := addr(fmt.Sprintf("2001:db8:1:2::%x", i+1))
			if _, err := e.svc.Login(e.ctx, fmt.Sprintf("guess%d", i), "whatever1", from); !errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
		_, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("2001:db8:1:2:ffff:ffff:ffff:9"))
		wantLimited(t, err, auth.FailureWindow, "same /64")
		if _, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("2001:db8:1:3::1")); err != nil {
			t.Errorf("next /64: %v", err)
		}
	})
}
