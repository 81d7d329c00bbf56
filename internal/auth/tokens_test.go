package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/store"
)

var tokenRE = regexp.MustCompile(`^ikb_[a-z2-7]{52}$`)

func TestCreateTokenFormatAndStorage(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		v, tok, err := e.svc.CreateToken(e.ctx, p, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if !tokenRE.MatchString(tok) {
			t.Errorf("token %q is not ikb_ + 52 lower-case base32 characters", tok)
		}
		if v.Name != "token" || v.UserID != p.UserID || v.User != "cleo" || v.Prefix != tok[4:12] ||
			v.LastUsedAt != nil || !v.CreatedAt.Equal(start) || v.ID == 0 {
			t.Errorf("view %+v for token %q", v, tok)
		}
		row, err := e.db.GetAPIToken(e.ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(tok))
		if row.TokenHash != hex.EncodeToString(sum[:]) || row.TokenPrefix != tok[4:12] {
			t.Errorf("stored hash %q prefix %q; want hex SHA-256 of the token and %q", row.TokenHash, row.TokenPrefix, tok[4:12])
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"id":%d,"user_id":%d,"user":"cleo","name":"token","created_at":"2026-03-01T10:00:00Z","prefix":%q}`,
			v.ID, p.UserID, tok[4:12])
		if string(b) != want {
			t.Errorf("TokenView JSON\n %s\nwant\n %s", b, want)
		}

		// The token works; junk and near misses do not.
		got, err := e.svc.TokenPrincipal(e.ctx, tok)
		if err != nil || got != p {
			t.Errorf("TokenPrincipal = %+v, %v; want %+v", got, err, p)
		}
		for _, bad := range []string{"", tok[4:], strings.ToUpper(tok), tok + "a", tok[:len(tok)-1],
			tok[:len(tok)-1] + "b", row.TokenHash, "ikb_" + strings.Repeat("a", 52)} {
			if bad == tok {
				continue
			}
			if _, err := e.svc.TokenPrincipal(e.ctx, bad); !errors.Is(err, auth.ErrBadToken) {
				t.Errorf("TokenPrincipal(%q) = %v, want ErrBadToken", bad, err)
			}
		}

		// Two tokens never match.
		_, tok2, err := e.svc.CreateToken(e.ctx, p, "cleo", "second one")
		if err != nil || tok2 == tok {
			t.Errorf("second token %q, %v", tok2, err)
		}

		ev := e.lastAudit("token-create")
		wantAudit(t, ev, "cleo", "ok", `"second one"`, `"cleo"`)
		for _, ev := range e.audit("token-create") {
			if strings.Contains(ev.Detail, tok) || strings.Contains(ev.Detail, tok2) ||
				strings.Contains(ev.Detail, tok[4:]) || strings.Contains(ev.Detail, tok2[4:12]) {
				t.Errorf("token-create audit holds (part of) the token: %q", ev.Detail)
			}
		}
	})
}

func TestTokenNames(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		for _, ok := range []string{"a", "CI deploy-2.prod_x", strings.Repeat("z", 64)} {
			if _, _, err := e.svc.CreateToken(e.ctx, p, "", ok); err != nil {
				t.Errorf("name %q: %v", ok, err)
			}
		}
		for _, bad := range []string{strings.Repeat("z", 65), "tab\there", "semi;colon", "ünï", "new\nline", "a/b"} {
			_, _, err := e.svc.CreateToken(e.ctx, p, "", bad)
			wantInvalid(t, err, "name")
		}
	})
}

// TestTokenPermissions: own tokens for everyone; anyone's for admins; root must name a user;
// another's token id answers ErrNotFound.
func TestTokenPermissions(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		sup := e.user("sam", auth.RoleSupport, "support password")
		alice := e.user("alice", auth.RoleCustomer, "alice password")
		bob := e.user("bob", auth.RoleCustomer, "bob's password")

		va, _, err := e.svc.CreateToken(e.ctx, alice, "", "alice ci")
		if err != nil {
			t.Fatal(err)
		}
		vb, tokB, err := e.svc.CreateToken(e.ctx, admin, "bob", "made by ada")
		if err != nil || vb.UserID != bob.UserID {
			t.Fatalf("admin creates for bob: %+v, %v", vb, err)
		}
		if p, err := e.svc.TokenPrincipal(e.ctx, tokB); err != nil || p != bob {
			t.Errorf("bob's token acts as %+v, %v", p, err)
		}
		if _, _, err := e.svc.CreateToken(e.ctx, root, "sam", "by root"); err != nil {
			t.Errorf("root creates for sam: %v", err)
		}
		_, _, err = e.svc.CreateToken(e.ctx, root, "", "for nobody")
		wantInvalid(t, err, "user")
		if _, _, err := e.svc.CreateToken(e.ctx, admin, "nobody", "x"); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("admin creates for an unknown user: %v, want ErrNotFound", err)
		}
		for _, who := range []auth.Principal{alice, sup} {
			if _, _, err := e.svc.CreateToken(e.ctx, who, "bob", "x"); !errors.Is(err, auth.ErrForbidden) {
				t.Errorf("%s creates for bob: %v, want ErrForbidden", who.Name, err)
			}
			// Also for a name that does not exist: the answer does not tell which names exist.
			if _, _, err := e.svc.CreateToken(e.ctx, who, "nobody", "x"); !errors.Is(err, auth.ErrForbidden) {
				t.Errorf("%s creates for nobody: %v, want ErrForbidden", who.Name, err)
			}
		}
		wantAudit(t, e.lastAudit("token-create"), "sam", "refused")

		ids := func(vs []auth.TokenView) string {
			var s []string
			for _, v := range vs {
				s = append(s, fmt.Sprintf("%s:%s", v.User, v.Name))
			}
			return strings.Join(s, ",")
		}
		list := func(p auth.Principal, user string) string {
			t.Helper()
			vs, err := e.svc.Tokens(e.ctx, p, user)
			if err != nil {
				t.Fatalf("%s lists %q: %v", p.Name, user, err)
			}
			return ids(vs)
		}
		if got := list(alice, ""); got != "alice:alice ci" {
			t.Errorf("alice sees %q", got)
		}
		if got := list(alice, "alice"); got != "alice:alice ci" {
			t.Errorf("alice sees %q by name", got)
		}
		if got := list(bob, ""); got != "bob:made by ada" {
			t.Errorf("bob sees %q", got)
		}
		all := "alice:alice ci,bob:made by ada,sam:by root"
		if got := list(admin, ""); got != all {
			t.Errorf("admin sees %q, want %q", got, all)
		}
		if got := list(root, ""); got != all {
			t.Errorf("root sees %q, want %q", got, all)
		}
		if got := list(admin, "bob"); got != "bob:made by ada" {
			t.Errorf("admin lists bob's: %q", got)
		}
		if got := list(admin, "ada"); got != "" {
			t.Errorf("admin's own: %q", got)
		}
		if _, err := e.svc.Tokens(e.ctx, alice, "bob"); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("alice lists bob's: %v, want ErrForbidden", err)
		}
		if _, err := e.svc.Tokens(e.ctx, sup, "alice"); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("support lists alice's: %v, want ErrForbidden", err)
		}
		if _, err := e.svc.Tokens(e.ctx, admin, "nobody"); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("admin lists nobody's: %v, want ErrNotFound", err)
		}

		// Revoking: bob cannot touch alice's token, and cannot tell it from a missing one.
		errOther := e.svc.RevokeToken(e.ctx, bob, va.ID)
		errMissing := e.svc.RevokeToken(e.ctx, bob, 99999)
		if !errors.Is(errOther, auth.ErrNotFound) || !errors.Is(errMissing, auth.ErrNotFound) {
			t.Errorf("bob revokes alice's: %v; a missing one: %v; want ErrNotFound for both", errOther, errMissing)
		}
		if strings.Contains(errOther.Error(), "alice") {
			t.Errorf("the refusal names the owner: %v", errOther)
		}
		if got := list(alice, ""); got != "alice:alice ci" {
			t.Errorf("alice's token after bob's attempt: %q", got)
		}

		feed, err := e.svc.SubscribeRevocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.RevokeToken(e.ctx, alice, va.ID); err != nil {
			t.Errorf("alice revokes her own: %v", err)
		}
		// A token has no sockets: revoking it ends none of alice's pages.
		quiet(t, feed)
		if err := e.svc.RevokeToken(e.ctx, alice, va.ID); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("revoke twice: %v", err)
		}
		if err := e.svc.RevokeToken(e.ctx, admin, vb.ID); err != nil {
			t.Errorf("admin revokes bob's: %v", err)
		}
		if _, err := e.svc.TokenPrincipal(e.ctx, tokB); !errors.Is(err, auth.ErrBadToken) {
			t.Errorf("revoked token: %v, want ErrBadToken", err)
		}
		wantAudit(t, e.lastAudit("token-revoke"), "ada", "ok", fmt.Sprintf("token %d", vb.ID), `"made by ada"`)
	})
}

func TestTokenLimitPerUser(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		other := e.user("olga", auth.RoleCustomer, "olga's password")
		for i := range auth.MaxTokensPerUser {
			if _, _, err := e.svc.CreateToken(e.ctx, p, "", fmt.Sprintf("t%d", i)); err != nil {
				t.Fatalf("token %d: %v", i+1, err)
			}
		}
		_, _, err := e.svc.CreateToken(e.ctx, p, "", "one too many")
		if !errors.Is(err, auth.ErrLimit) {
			t.Errorf("token %d: %v, want ErrLimit", auth.MaxTokensPerUser+1, err)
		}
		if _, _, err := e.svc.CreateToken(e.ctx, other, "", "olga first"); err != nil {
			t.Errorf("another user's token: %v", err)
		}
		vs, err := e.svc.Tokens(e.ctx, p, "")
		if err != nil || len(vs) != auth.MaxTokensPerUser {
			t.Fatalf("%d tokens, %v", len(vs), err)
		}
		if err := e.svc.RevokeToken(e.ctx, p, vs[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.CreateToken(e.ctx, p, "", "after a revoke"); err != nil {
			t.Errorf("after revoking one: %v", err)
		}
	})
}

// TestTokenLastUsedThrottled: last_used_at is written at first use, then at most once a minute.
func TestTokenLastUsedThrottled(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		v, tok, err := e.svc.CreateToken(e.ctx, p, "", "")
		if err != nil {
			t.Fatal(err)
		}
		lastUsed := func() *time.Time {
			row, err := e.db.GetAPIToken(e.ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			return row.LastUsedAt
		}
		use := func() {
			t.Helper()
			if _, err := e.svc.TokenPrincipal(e.ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		e.clk.Advance(time.Hour)
		first := start.Add(time.Hour)
		use()
		if got := lastUsed(); got == nil || !got.Equal(first) {
			t.Fatalf("last_used_at after first use = %v, want %s", got, first)
		}
		e.clk.Advance(59 * time.Second)
		use()
		if got := lastUsed(); !got.Equal(first) {
			t.Errorf("written again after 59 s: %s", got)
		}
		e.clk.Advance(time.Second)
		use()
		if got := lastUsed(); !got.Equal(first.Add(time.Minute)) {
			t.Errorf("after 60 s: %s, want %s", got, first.Add(time.Minute))
		}
		vs, err := e.svc.Tokens(e.ctx, p, "")
		if err != nil || len(vs) != 1 || vs[0].LastUsedAt == nil || !vs[0].LastUsedAt.Equal(first.Add(time.Minute)) {
			t.Errorf("listed last_used_at: %+v, %v", vs, err)
		}
	})
}

func TestTokenExpiryAndDisabledOwner(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		admin := e.user("ada", auth.RoleAdmin, "admin password")
		p := e.user("cleo", auth.RoleCustomer, "customer password")
		v, tok, err := e.svc.CreateToken(e.ctx, p, "", "")
		if err != nil {
			t.Fatal(err)
		}
		// Tokens are created without an end; one set in the row is honoured.
		end := start.Add(time.Hour)
		if err := e.db.Gorm().Model(&store.APIToken{}).Where("id = ?", v.ID).Update("expires_at", end).Error; err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.TokenPrincipal(e.ctx, tok); err != nil {
			t.Errorf("before its end: %v", err)
		}
		e.clk.Set(end)
		if _, err := e.svc.TokenPrincipal(e.ctx, tok); !errors.Is(err, auth.ErrBadToken) {
			t.Errorf("at its end: %v, want ErrBadToken", err)
		}

		// A disabled user gets no new tokens.
		if err := e.svc.SetDisabled(e.ctx, admin, p.UserID, true); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.CreateToken(e.ctx, admin, "cleo", "x"); !errors.Is(err, auth.ErrDisabled) {
			t.Errorf("token for a disabled user: %v, want ErrDisabled", err)
		}
	})
}
