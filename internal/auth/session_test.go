package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
)

func TestLoginStartsASession(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("alice", auth.RoleSupport, "correct horse")
		s1 := e.login("alice", "correct horse")

		raw, err := base64.RawURLEncoding.DecodeString(s1.Token)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q: %d bytes, %v; want 32 random bytes in base64url", s1.Token, len(raw), err)
		}
		sum := sha256.Sum256([]byte(s1.Token))
		if s1.ID != hex.EncodeToString(sum[:]) {
			t.Errorf("session id %q is not the hex SHA-256 of the token", s1.ID)
		}
		if s1.Principal != p {
			t.Errorf("principal %+v, want %+v", s1.Principal, p)
		}
		if !s1.ExpiresAt.Equal(start.Add(auth.SessionLifetime)) {
			t.Errorf("ExpiresAt %s, want sign-in + 7 days", s1.ExpiresAt)
		}
		row, err := e.db.GetSession(e.ctx, s1.ID)
		if err != nil {
			t.Fatalf("stored session: %v", err)
		}
		if row.UserID != p.UserID || !row.LastSeenAt.Equal(start) || !row.CreatedAt.Equal(start) {
			t.Errorf("stored session %+v", row)
		}
		// The token itself is stored nowhere.
		var hits int64
		if err := e.db.Gorm().Model(&store.Session{}).Where("id = ? ", s1.Token).Count(&hits).Error; err != nil || hits != 0 {
			t.Errorf("the token is stored as an id (%d, %v)", hits, err)
		}

		// Each sign-in gets a new token and a new id; both sessions work.
		s2 := e.login("alice", "correct horse")
		if s2.Token == s1.Token || s2.ID == s1.ID {
			t.Error("a second sign-in reused the token")
		}
		for _, s := range []auth.Session{s1, s2} {
			got, err := e.svc.SessionPrincipal(e.ctx, s.Token)
			if err != nil || got.Principal != p || got.ID != s.ID || got.CSRF != s.CSRF {
				t.Errorf("SessionPrincipal = %+v, %v", got, err)
			}
		}
		wantAudit(t, e.lastAudit("login"), "alice", "ok", "192.0.2.10")
		if ev := e.lastAudit("login"); ev.ActorID == nil || *ev.ActorID != p.UserID {
			t.Errorf("login audit actor id %v, want %d", ev.ActorID, p.UserID)
		}
	})
}

func TestLoginRefusals(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("alice", auth.RoleCustomer, "correct horse")
		for _, c := range []struct{ name, password, actor, detail string }{
			{"alice", "wrong horse", "alice", "bad credentials"},
			{"nobody", "correct horse", "nobody", "bad credentials"},
			{"Robert'); DROP TABLE users;--", "x", "?", "an invalid name of 29 bytes"},
			{strings.Repeat("n", 100), "x", "?", "an invalid name of 100 bytes"},
		} {
			_, err := e.svc.Login(e.ctx, c.name, c.password, addr("192.0.2.99"))
			if !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("Login(%q) = %v, want ErrBadCredentials", c.name, err)
			}
			ev := e.lastAudit("login")
			wantAudit(t, ev, c.actor, "refused", c.detail, "bad credentials")
			// A name that is no user name may be a password typed in the
			// wrong field: none of it is recorded.
			if strings.Contains(ev.Detail, "nnnn") || strings.Contains(ev.Detail, "DROP") {
				t.Errorf("audit detail holds the tried name: %q", ev.Detail)
			}
			if c.password != "x" && strings.Contains(ev.Detail, c.password) {
				t.Errorf("audit detail holds the password: %q", ev.Detail)
			}
		}

		// A disabled user cannot sign in even with the right password.
		admin := e.user("root-ish", auth.RoleAdmin, "admin password")
		if err := e.svc.SetDisabled(e.ctx, admin, p.UserID, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Login(e.ctx, "alice", "correct horse", addr("192.0.2.99")); !errors.Is(err, auth.ErrDisabled) {
			t.Errorf("disabled user signs in: %v", err)
		}
		wantAudit(t, e.lastAudit("login"), "alice", "refused", "disabled")
		if n := e.sessions(p.UserID); n != 0 {
			t.Errorf("a disabled user's sign-in stored %d sessions", n)
		}
		if err := e.svc.SetDisabled(e.ctx, admin, p.UserID, false); err != nil {
			t.Fatal(err)
		}
		e.login("alice", "correct horse")
	})
}

func TestSessionIdleTimeout(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		s := e.login("alice", "correct horse")

		// Used every 11 hours, the session lives on past 12 hours from sign-in.
		for range 3 {
			e.clk.Advance(11 * time.Hour)
			if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); err != nil {
				t.Fatalf("after 11 h of idling: %v", err)
			}
		}
		row, err := e.db.GetSession(e.ctx, s.ID)
		if err != nil || !row.LastSeenAt.Equal(e.clk.Now()) {
			t.Fatalf("last_seen_at = %v, %v; want %s", row, err, e.clk.Now())
		}
		// 12 hours without use ends it, and the row goes.
		e.clk.Advance(auth.SessionIdleTimeout)
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Fatalf("after 12 h of idling: %v, want ErrNoSession", err)
		}
		if _, err := e.db.GetSession(e.ctx, s.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the idle session is still stored: %v", err)
		}
	})
}

func TestSessionAbsoluteLifetime(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		s := e.login("alice", "correct horse")
		// Used every 6 hours: never idle, but it ends 7 days after sign-in all the same.
		for e.clk.Now().Add(6 * time.Hour).Before(start.Add(auth.SessionLifetime)) {
			e.clk.Advance(6 * time.Hour)
			if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); err != nil {
				t.Fatalf("at %s: %v", e.clk.Now().Sub(start), err)
			}
		}
		e.clk.Set(start.Add(auth.SessionLifetime))
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("after 7 days: %v, want ErrNoSession", err)
		}
	})
}

// TestSessionTouchThrottled: use is written at most once a minute.
func TestSessionTouchThrottled(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		s := e.login("alice", "correct horse")
		lastSeen := func() time.Time {
			row, err := e.db.GetSession(e.ctx, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			return row.LastSeenAt
		}
		e.clk.Advance(59 * time.Second)
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); err != nil {
			t.Fatal(err)
		}
		if got := lastSeen(); !got.Equal(start) {
			t.Errorf("touched after 59 s: last_seen_at %s", got)
		}
		e.clk.Advance(time.Second)
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); err != nil {
			t.Fatal(err)
		}
		if got := lastSeen(); !got.Equal(start.Add(time.Minute)) {
			t.Errorf("after 60 s: last_seen_at %s, want %s", got, start.Add(time.Minute))
		}
	})
}

func TestSessionReadsCurrentRole(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("alice", auth.RoleCustomer, "correct horse")
		s := e.login("alice", "correct horse")
		// Changed behind the service's back (no session ended): the next read sees it.
		role := string(auth.RoleSupport)
		if err := e.db.UpdateUser(e.ctx, p.UserID, store.UserUpdate{Role: &role}); err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.SessionPrincipal(e.ctx, s.Token)
		if err != nil || got.Principal.Role != auth.RoleSupport {
			t.Errorf("after a role change: %+v, %v", got.Principal, err)
		}
		// A role that is no role fails closed.
		role = "superuser"
		if err := e.db.UpdateUser(e.ctx, p.UserID, store.UserUpdate{Role: &role}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("bad stored role: %v, want ErrNoSession", err)
		}
		// Disabled behind the service's back: refused too.
		role, disabled := string(auth.RoleCustomer), true
		if err := e.db.UpdateUser(e.ctx, p.UserID, store.UserUpdate{Role: &role, Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("disabled user: %v, want ErrNoSession", err)
		}
	})
}

func TestSessionPrincipalRefusesJunk(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		s := e.login("alice", "correct horse")
		for _, tok := range []string{"", "x", s.ID, s.Token + "A", s.Token[:42], strings.ToUpper(s.Token),
			strings.Repeat("A", 43), "ikb_" + s.Token} {
			if _, err := e.svc.SessionPrincipal(e.ctx, tok); !errors.Is(err, auth.ErrNoSession) {
				t.Errorf("SessionPrincipal(%q) = %v, want ErrNoSession", tok, err)
			}
		}
	})
}

func TestLogout(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		s1 := e.login("alice", "correct horse")
		s2 := e.login("alice", "correct horse")
		feed, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Logout(e.ctx, s1.Token); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s1.Token); !errors.Is(err, auth.ErrNoSession) {
			t.Errorf("after logout: %v, want ErrNoSession", err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, s2.Token); err != nil {
			t.Errorf("the other session ended too: %v", err)
		}
		// The user's other sessions (and their sockets) live on: nothing
		// is published; the caller ends this session's sockets itself.
		quiet(t, feed)
		ev := e.lastAudit("logout")
		wantAudit(t, ev, "alice", "ok", "session "+s1.ID[:8])
		if strings.Contains(ev.Detail, s1.Token) || strings.Contains(ev.Detail, s1.ID) {
			t.Errorf("logout audit holds the token or the whole id: %q", ev.Detail)
		}
		// Logging out again, or with junk, is not an error and records nothing.
		for _, tok := range []string{s1.Token, "", "junk"} {
			if err := e.svc.Logout(e.ctx, tok); err != nil {
				t.Errorf("Logout(%q) = %v", tok, err)
			}
		}
		if n := len(e.audit("logout")); n != 1 {
			t.Errorf("%d logout records, want 1", n)
		}
	})
}

func TestCSRF(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		s1 := e.login("alice", "correct horse")
		s2 := e.login("alice", "correct horse")

		mac := hmac.New(sha256.New, []byte(s1.Token))
		mac.Write([]byte("ikabud-csrf"))
		if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); s1.CSRF != want {
			t.Errorf("CSRF %q, want base64url(HMAC-SHA256(token, \"ikabud-csrf\"))", s1.CSRF)
		}
		// Deterministic: reading the session again gives the same CSRF token.
		again, err := e.svc.SessionPrincipal(e.ctx, s1.Token)
		if err != nil || again.CSRF != s1.CSRF {
			t.Errorf("CSRF on read %q (%v), at sign-in %q", again.CSRF, err, s1.CSRF)
		}
		if !auth.CheckCSRF(again, s1.CSRF) {
			t.Error("the session's own CSRF token is refused")
		}
		for what, given := range map[string]string{
			"empty": "", "another session's": s2.CSRF, "truncated": s1.CSRF[:len(s1.CSRF)-1],
			"the session token": s1.Token, "the session id": s1.ID,
		} {
			if auth.CheckCSRF(s1, given) {
				t.Errorf("%s CSRF token accepted", what)
			}
		}
		// A session without a token (the zero Session) accepts nothing, not even "".
		if auth.CheckCSRF(auth.Session{}, "") || auth.CheckCSRF(auth.Session{CSRF: "x"}, "x") {
			t.Error("a session without a token accepted a CSRF token")
		}
	})
}

func TestPurgeExpired(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user("alice", auth.RoleCustomer, "correct horse")
		idle := e.login("alice", "correct horse")
		e.clk.Advance(6 * time.Hour)
		used := e.login("alice", "correct horse")
		e.clk.Advance(6*time.Hour + time.Second) // idle: 12 h 1 s; used: 6 h 1 s
		n, err := e.svc.PurgeExpired(e.ctx)
		if err != nil || n != 1 {
			t.Fatalf("PurgeExpired = %d, %v; want 1", n, err)
		}
		if _, err := e.db.GetSession(e.ctx, idle.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("idle session kept: %v", err)
		}
		if _, err := e.svc.SessionPrincipal(e.ctx, used.Token); err != nil {
			t.Errorf("live session: %v", err)
		}
		// Kept in use, it still goes at its absolute end.
		for e.clk.Now().Add(10 * time.Hour).Before(start.Add(6*time.Hour + auth.SessionLifetime)) {
			e.clk.Advance(10 * time.Hour)
			if _, err := e.svc.SessionPrincipal(e.ctx, used.Token); err != nil {
				t.Fatal(err)
			}
		}
		e.clk.Set(start.Add(6*time.Hour + auth.SessionLifetime))
		if n, err := e.svc.PurgeExpired(e.ctx); err != nil || n != 1 {
			t.Errorf("PurgeExpired at the absolute end = %d, %v; want 1", n, err)
		}
	})
}

// TestSessionValid: the websocket re-check by session id follows SessionPrincipal's rules but
// does not count as use.
func TestSessionValid(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		s := e.login("cleo", "customer password")
		if !e.svc.SessionValid(e.ctx, s.ID) {
			t.Fatal("a fresh session is not valid")
		}
		for _, junk := range []string{"", s.Token, s.ID[:63], strings.Repeat("0", 64)} {
			if e.svc.SessionValid(e.ctx, junk) {
				t.Errorf("SessionValid(%q) = true", junk)
			}
		}
		e.clk.Advance(11 * time.Hour)
		if !e.svc.SessionValid(e.ctx, s.ID) {
			t.Fatal("valid after 11 h")
		}
		if row, err := e.db.GetSession(e.ctx, s.ID); err != nil || !row.LastSeenAt.Equal(start) {
			t.Errorf("the re-check counted as use: %v, %v", row, err)
		}
		e.clk.Advance(time.Hour)
		if e.svc.SessionValid(e.ctx, s.ID) {
			t.Error("valid after 12 h without use")
		}

		s = e.login("cleo", "customer password")
		if err := e.svc.SetDisabled(e.ctx, admin, p.UserID, true); err != nil {
			t.Fatal(err)
		}
		if e.svc.SessionValid(e.ctx, s.ID) {
			t.Error("valid after the user was disabled")
		}
		if err := e.svc.SetDisabled(e.ctx, admin, p.UserID, false); err != nil {
			t.Fatal(err)
		}
		s = e.login("cleo", "customer password")
		if err := e.svc.Logout(e.ctx, s.Token); err != nil {
			t.Fatal(err)
		}
		if e.svc.SessionValid(e.ctx, s.ID) {
			t.Error("valid after logout")
		}
	})
}
