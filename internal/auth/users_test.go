package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
)

// recv returns the next id on the feed, failing the test if none comes or the feed closed.
func recv(t *testing.T, feed <-chan uint) uint {
	t.Helper()
	select {
	case id, ok := <-feed:
		if !ok {
			t.Fatal("revocation feed closed")
		}
		return id
	case <-time.After(5 * time.Second):
		t.Fatal("nothing on the revocation feed")
		return 0
	}
}

// quiet fails the test if the feed holds anything.
func quiet(t *testing.T, feed <-chan uint) {
	t.Helper()
	select {
	case id := <-feed:
		t.Errorf("unexpected revocation of user %d", id)
	default:
	}
}

var root = auth.Principal{Name: "root", Role: auth.RoleAdmin}

func TestUsersAndCreateUser(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		sup := e.user("sam", auth.RoleSupport, "support password")
		cust := e.user("cleo", auth.RoleCustomer, "customer password")

		v, err := e.svc.CreateUser(e.ctx, admin, "dora", auth.RoleCustomer, "dora's password")
		if err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		if v.ID == 0 || v.Name != "dora" || v.Role != auth.RoleCustomer || v.Disabled || v.UnixUID != nil || !v.CreatedAt.Equal(start) {
			t.Errorf("CreateUser = %+v", v)
		}
		e.login("dora", "dora's password")
		wantAudit(t, e.lastAudit("user-create"), "ada", "ok", `user "dora"`, "customer")
		if strings.Contains(e.lastAudit("user-create").Detail, "dora's password") {
			t.Error("user-create audit holds the password")
		}

		// Only admins create; values are checked and named.
		for _, p := range []auth.Principal{sup, cust} {
			_, err := e.svc.CreateUser(e.ctx, p, "eve", auth.RoleAdmin, "eve's password")
			if !errors.Is(err, auth.ErrForbidden) {
				t.Errorf("%s creates a user: %v, want ErrForbidden", p.Role, err)
			}
		}
		wantAudit(t, e.lastAudit("user-create"), "cleo", "refused")
		_, err = e.svc.CreateUser(e.ctx, admin, "Eve", auth.RoleAdmin, "eve's password")
		wantInvalid(t, err, "name")
		_, err = e.svc.CreateUser(e.ctx, admin, "eve", "owner", "eve's password")
		wantInvalid(t, err, "role")
		_, err = e.svc.CreateUser(e.ctx, admin, "eve", auth.RoleAdmin, "")
		wantInvalid(t, err, "password")
		_, err = e.svc.CreateUser(e.ctx, admin, "eve", auth.RoleAdmin, "short")
		wantInvalid(t, err, "password", "8 to 256")
		if strings.Contains(e.lastAudit("user-create").Detail, "short") {
			t.Error("user-create audit of a refused password holds it")
		}
		_, err = e.svc.CreateUser(e.ctx, admin, "dora", auth.RoleAdmin, "another password")
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate: %v, want store.ErrConflict", err)
		}

		// Admins and support staff list users; customers do not. No hash in the JSON.
		for _, p := range []auth.Principal{admin, sup, root} {
			list, err := e.svc.Users(e.ctx, p)
			if err != nil || len(list) != 4 {
				t.Fatalf("%s lists %d users, %v; want 4", p.Name, len(list), err)
			}
			var names []string
			for _, u := range list {
				names = append(names, u.Name)
			}
			if strings.Join(names, ",") != "ada,cleo,dora,sam" {
				t.Errorf("users = %v", names)
			}
		}
		if _, err := e.svc.Users(e.ctx, cust); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("customer lists users: %v, want ErrForbidden", err)
		}
		list, _ := e.svc.Users(e.ctx, admin)
		b, err := json.Marshal(list[0])
		if err != nil {
			t.Fatal(err)
		}
		want := `{"id":` + jsonNum(admin.UserID) + `,"name":"ada","role":"admin","disabled":false,"created_at":"2026-03-01T10:00:00Z"}`
		if string(b) != want {
			t.Errorf("UserView JSON\n %s\nwant\n %s", b, want)
		}
	})
}

func jsonNum(n uint) string { b, _ := json.Marshal(n); return string(b) }

// TestSetRole: admins only; not on oneself; the target's sessions end and the feed says so;
// a token carries the new role from its next use.
func TestSetRole(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		cust := e.user("cleo", auth.RoleCustomer, "customer password")
		other := e.user("olga", auth.RoleCustomer, "olga's password")
		s := e.login("cleo", "customer password")
		keep := e.login("olga", "olga's password")
		_, tok, err := e.svc.CreateToken(e.ctx, cust, "", "ci")
		if err != nil {
			t.Fatal(err)
		}
		feed, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		if err := e.svc.SetRole(e.ctx, cust, cust.UserID, auth.RoleAdmin); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("customer promotes themselves: %v", err)
		}
		if err := e.svc.SetRole(e.ctx, admin, 99999, auth.RoleSupport); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("unknown id: %v, want ErrNotFound", err)
		}
		wantInvalid(t, e.svc.SetRole(e.ctx, admin, cust.UserID, "owner"), "role")
		err = e.svc.SetRole(e.ctx, admin, admin.UserID, auth.RoleSupport)
		if !errors.Is(err, auth.ErrForbidden) || !strings.Contains(err.Error(), "demote themselves") {
			t.Errorf("admin demotes themselves: %v, want ErrForbidden saying why", err)
		}
		quiet(t, feed)
		if r := e.stored(admin.UserID).Role; r != "admin" {
			t.Errorf("admin's role is now %q", r)
		}

		if err := e.svc.SetRole(e.ctx, admin, cust.UserID, auth.RoleSupport); err != nil {
			t.Fatal(err)
		}
		if r := e.stored(cust.UserID).Role; r != "support" {
			t.Errorf("stored role %q", r)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("session after a role change: %v, want ErrNoSession", err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, keep.Token); err != nil {
			t.Errorf("another user's session ended: %v", err)
		}
		if got := recv(t, feed); got != cust.UserID {
			t.Errorf("feed sent %d, want %d", got, cust.UserID)
		}
		if p, err := e.svc.TokenPrincipal(e.ctx, tok); err != nil || p.Role != auth.RoleSupport {
			t.Errorf("token after the role change: %+v, %v; want support", p, err)
		}
		wantAudit(t, e.lastAudit("user-role"), "ada", "ok", `"cleo"`, "customer -> support", "1 sessions ended")

		// The same role again changes nothing and ends nothing.
		s = e.login("cleo", "customer password")
		if err := e.svc.SetRole(e.ctx, admin, cust.UserID, auth.RoleSupport); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); err != nil {
			t.Errorf("an unchanged role ended the session: %v", err)
		}
		quiet(t, feed)
		// Root (no user row) may change anyone, and an admin may set another admin's role.
		if err := e.svc.SetRole(e.ctx, root, admin.UserID, auth.RoleSupport); err != nil {
			t.Errorf("root demotes an admin: %v", err)
		}
		if err := e.svc.SetRole(e.ctx, root, other.UserID, auth.RoleAdmin); err != nil {
			t.Errorf("root promotes: %v", err)
		}
	})
}

// TestSetDisabled: admins only; not on oneself; sessions end, tokens and the Unix uid stop
// working, and sign-in is refused until enabled again.
func TestSetDisabled(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		u, err := e.svc.AddUser(e.ctx, "cleo", auth.RoleCustomer, "customer password", new(2500))
		if err != nil {
			t.Fatal(err)
		}
		cust := auth.Principal{UserID: u.ID, Name: "cleo", Role: auth.RoleCustomer}
		s := e.login("cleo", "customer password")
		_, tok, err := e.svc.CreateToken(e.ctx, cust, "", "")
		if err != nil {
			t.Fatal(err)
		}
		feed, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		if err := e.svc.SetDisabled(e.ctx, cust, admin.UserID, true); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("customer disables an admin: %v", err)
		}
		wantAudit(t, e.lastAudit("user-disable"), "cleo", "refused")
		err = e.svc.SetDisabled(e.ctx, admin, admin.UserID, true)
		if !errors.Is(err, auth.ErrForbidden) || !strings.Contains(err.Error(), "disable themselves") {
			t.Errorf("admin disables themselves: %v", err)
		}
		if err := e.svc.SetDisabled(e.ctx, admin, 99999, true); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		quiet(t, feed)

		if err := e.svc.SetDisabled(e.ctx, admin, cust.UserID, true); err != nil {
			t.Fatal(err)
		}
		if !e.stored(cust.UserID).Disabled {
			t.Error("not stored as disabled")
		}
		if got := recv(t, feed); got != cust.UserID {
			t.Errorf("feed sent %d", got)
		}
		if n := e.sessions(cust.UserID); n != 0 {
			t.Errorf("%d sessions left", n)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("session: %v", err)
		}
		if _, err := e.svc.TokenPrincipal(e.ctx, tok); !errors.Is(err, auth.ErrBadToken) {
			t.Errorf("token of a disabled user: %v, want ErrBadToken", err)
		}
		if _, err := e.svc.PrincipalForUID(e.ctx, 2500); !errors.Is(err, auth.ErrDisabled) {
			t.Errorf("uid of a disabled user: %v, want ErrDisabled", err)
		}
		if _, err := e.svc.Login(e.ctx, "cleo", "customer password", addr("192.0.2.5")); !errors.Is(err, auth.ErrDisabled) {
			t.Errorf("login of a disabled user: %v, want ErrDisabled", err)
		}
		wantAudit(t, e.lastAudit("user-disable"), "ada", "ok", `"cleo"`, "1 sessions ended")

		if err := e.svc.SetDisabled(e.ctx, admin, cust.UserID, false); err != nil {
			t.Fatal(err)
		}
		wantAudit(t, e.lastAudit("user-enable"), "ada", "ok", `"cleo"`)
		if _, err := e.svc.TokenPrincipal(e.ctx, tok); err != nil {
			t.Errorf("token after enabling: %v", err)
		}
		if _, err := e.svc.PrincipalForUID(e.ctx, 2500); err != nil {
			t.Errorf("uid after enabling: %v", err)
		}
		e.login("cleo", "customer password")
		// Enabling an enabled user changes nothing and ends nothing.
		if err := e.svc.SetDisabled(e.ctx, admin, cust.UserID, false); err != nil {
			t.Fatal(err)
		}
		if n := e.sessions(cust.UserID); n != 1 {
			t.Errorf("%d sessions after a no-op, want 1", n)
		}
		quiet(t, feed)
	})
}

// TestChangePassword: one's own, given the current one; every session of the user ends.
func TestChangePassword(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		s1 := e.login("cleo", "customer password")
		s2 := e.login("cleo", "customer password")
		feed, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		wantInvalid(t, e.svc.ChangePassword(e.ctx, p, "wrong password", "new password 1"), "current_password")
		wantInvalid(t, e.svc.ChangePassword(e.ctx, p, "customer password", "short"), "password", "8 to 256")
		if err := e.svc.ChangePassword(e.ctx, root, "x", "new password 1"); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("root changes a password: %v, want ErrForbidden", err)
		}
		quiet(t, feed)
		if e.sessions(p.UserID) != 2 {
			t.Fatal("a refused change ended sessions")
		}

		if err := e.svc.ChangePassword(e.ctx, p, "customer password", "new password 1"); err != nil {
			t.Fatal(err)
		}
		for _, s := range []auth.Session{s1, s2} {
			if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
				t.Errorf("session after a password change: %v", err)
			}
		}
		if got := recv(t, feed); got != p.UserID {
			t.Errorf("feed sent %d", got)
		}
		if _, err := e.svc.CheckPassword(e.ctx, "cleo", "customer password"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Errorf("old password: %v", err)
		}
		e.login("cleo", "new password 1")
		ev := e.lastAudit("password-change")
		wantAudit(t, ev, "cleo", "ok", "2 sessions ended")
		for _, ev := range append(e.audit("password-change"), e.audit("login")...) {
			for _, secret := range []string{"customer password", "new password 1", "wrong password"} {
				if strings.Contains(ev.Detail, secret) {
					t.Errorf("%s audit holds a password: %q", ev.Action, ev.Detail)
				}
			}
		}
	})
}

// TestChangePasswordIsRateLimited: wrong current passwords count as failed sign-ins, so a
// stolen session cannot guess faster than the sign-in form.
func TestChangePasswordIsRateLimited(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		for range auth.MaxAccountFailures {
			wantInvalid(t, e.svc.ChangePassword(e.ctx, p, "wrong password", "new password 1"), "current_password")
		}
		wantLimited(t, e.svc.ChangePassword(e.ctx, p, "customer password", "new password 1"), auth.FailureWindow, "change")
		wantLimited(t, func() error {
			_, err := e.svc.Login(e.ctx, "cleo", "customer password", addr("192.0.2.1"))
			return err
		}(), auth.FailureWindow, "login")
	})
}

func TestResetPassword(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		sup := e.user("sam", auth.RoleSupport, "support password")
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		s := e.login("cleo", "customer password")
		feed, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		for _, who := range []auth.Principal{sup, p} {
			if err := e.svc.ResetPassword(e.ctx, who, p.UserID, "new password 2"); !errors.Is(err, auth.ErrForbidden) {
				t.Errorf("%s resets: %v, want ErrForbidden", who.Name, err)
			}
		}
		if err := e.svc.ResetPassword(e.ctx, admin, 99999, "new password 2"); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		wantInvalid(t, e.svc.ResetPassword(e.ctx, admin, p.UserID, strings.Repeat("x", 257)), "password")
		quiet(t, feed)

		if err := e.svc.ResetPassword(e.ctx, admin, p.UserID, "new password 2"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("session after a reset: %v", err)
		}
		if got := recv(t, feed); got != p.UserID {
			t.Errorf("feed sent %d", got)
		}
		e.login("cleo", "new password 2")
		ev := e.lastAudit("password-reset")
		wantAudit(t, ev, "ada", "ok", `"cleo"`, "1 sessions ended")
		if strings.Contains(ev.Detail, "new password 2") {
			t.Errorf("reset audit holds the password: %q", ev.Detail)
		}
	})
}

// TestRevocationFeedBounds: at most MaxRevocationSubscribers at once; a subscriber that falls
// RevocationBuffer behind is closed rather than waited for; cancelling ctx closes and frees.
func TestRevocationFeedBounds(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		p := e.user("cleo", auth.RoleCustomer, "customer password")

		ctx, cancel := context.WithCancel(t.Context())
		var feeds []<-chan uint
		for range auth.MaxRevocationSubscribers {
			f, err := e.svc.SubscribeRevocations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			feeds = append(feeds, f)
		}
		if _, err := e.svc.SubscribeRevocations(t.Context()); !errors.Is(err, auth.ErrLimit) {
			t.Fatalf("subscriber %d: %v, want ErrLimit", auth.MaxRevocationSubscribers+1, err)
		}
		cancel()
		for i, f := range feeds {
			select {
			case _, ok := <-f:
				if ok {
					t.Errorf("feed %d sent a value after cancel", i)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("feed %d not closed after cancel", i)
			}
		}
		// The slots are free again.
		slow, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatalf("subscribe after cancel: %v", err)
		}
		fast, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		// The slow reader never reads: after RevocationBuffer ids its channel is closed, and
		// the publisher (the role changes) never waited.
		done := make(chan struct{})
		got := 0
		go func() {
			defer close(done)
			for range fast {
				got++
				if got == auth.RevocationBuffer+1 {
					return
				}
			}
		}()
		roles := []auth.Role{auth.RoleSupport, auth.RoleCustomer}
		for i := range auth.RevocationBuffer + 1 {
			if err := e.svc.SetRole(e.ctx, admin, p.UserID, roles[i%2]); err != nil {
				t.Fatal(err)
			}
		}
		<-done
		n := 0
	drain:
		for {
			select {
			case _, ok := <-slow:
				if !ok {
					break drain
				}
				n++
			case <-time.After(5 * time.Second):
				t.Fatalf("the slow subscriber's channel is still open after %d ids", n)
			}
		}
		if n != auth.RevocationBuffer {
			t.Errorf("the slow subscriber got %d ids before its close, want %d", n, auth.RevocationBuffer)
		}
		if got != auth.RevocationBuffer+1 {
			t.Errorf("the reading subscriber got %d ids, want %d", got, auth.RevocationBuffer+1)
		}
	})
}
