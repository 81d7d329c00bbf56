package auth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ikabud/panel/internal/store"
)

// API tokens are "ikb_" and 32 random bytes in lower-case base32 without padding (56
// characters in all), so that a leaked token is easy to find in logs and pastes. Only their
// SHA-256 is stored, with the first TokenPrefixLen characters after "ikb_" for people to tell
// them apart.
const (
	TokenPrefix      = "ikb_"
	TokenPrefixLen   = 8
	MaxTokensPerUser = 50
	DefaultTokenName = "token"
	MaxTokenNameLen  = 64
	apiTokenBytes    = 32
	tokenNameRule    = "must be 1 to 64 characters: letters, digits, spaces, '.', '_' or '-'"
)

// tokenEncoding is base32 in lower case without padding.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TokenView is an API token as the API shows it: never the token or its hash.
type TokenView struct {
	ID         uint       `json:"id"`
	UserID     uint       `json:"user_id"`
	User       string     `json:"user"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// Prefix is the first TokenPrefixLen characters after "ikb_".
	Prefix string `json:"prefix"`
}

func tokenViewOf(t store.APIToken, user string) TokenView {
	return TokenView{ID: t.ID, UserID: t.UserID, User: user, Name: t.Name, CreatedAt: t.CreatedAt,
		LastUsedAt: t.LastUsedAt, Prefix: t.TokenPrefix}
}

// ValidateTokenName checks a token name: 1 to MaxTokenNameLen characters of A-Z, a-z, 0-9,
// space, '.', '_' and '-'. It returns an *InvalidError for field "name".
func ValidateTokenName(s string) error {
	if len(s) < 1 || len(s) > MaxTokenNameLen {
		return invalid("name", "token name is %d characters long; %s", len(s), tokenNameRule)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '.' || c == '_' || c == '-') {
			return invalid("name", "token name %q has %q at position %d; %s", s, rune(c), i+1, tokenNameRule)
		}
	}
	return nil
}

// newAPIToken returns a fresh token.
func newAPIToken() (string, error) {
	b := make([]byte, apiTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: API token: %w", err)
	}
	return TokenPrefix + tokenEncoding.EncodeToString(b), nil
}

// wellFormedAPIToken reports whether token could be one of ours, so that junk never reaches
// the database.
func wellFormedAPIToken(token string) bool {
	body, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok || len(body) != tokenEncoding.EncodedLen(apiTokenBytes) {
		return false
	}
	// Re-encoding refuses the non-canonical spellings (stray low bits) of the same bytes.
	b, err := tokenEncoding.DecodeString(body)
	return err == nil && len(b) == apiTokenBytes && tokenEncoding.EncodeToString(b) == body
}

// tokenOwner resolves whose tokens p asks about: "" means p itself, another name needs an
// admin. Root (UserID 0) has no tokens of its own and must name a user.
func (s *Service) tokenOwner(ctx context.Context, p Principal, userName string) (*store.User, error) {
	if userName == "" {
		if p.UserID == 0 {
			return nil, invalid("user", "%s has no user row and no tokens of its own; name the user", p.Name)
		}
		return s.userByID(ctx, p.UserID)
	}
	if userName != p.Name && !p.CanChange() {
		return nil, fmt.Errorf("%w: only admins manage the API tokens of other users", ErrForbidden)
	}
	u, err := s.db.GetUserByName(ctx, userName)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: user %q", ErrNotFound, userName)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return u, nil
}

// CreateToken creates an API token named name ("" means DefaultTokenName) for userName ("" means
// p itself; root must name a user; naming another user needs an admin) and returns it with the
// token itself, which is shown this once and stored nowhere. A user holds at most
// MaxTokensPerUser tokens (past that: ErrLimit); a disabled user gets none (ErrDisabled).
func (s *Service) CreateToken(ctx context.Context, p Principal, userName, name string) (v TokenView, token string, err error) {
	if name == "" {
		name = DefaultTokenName
	}
	detail := fmt.Sprintf("token %q", name)
	defer func() { s.audit(ctx, p, actionTokenCreate, detail, err) }()
	if err := ValidateTokenName(name); err != nil {
		return TokenView{}, "", err
	}
	u, err := s.tokenOwner(ctx, p, userName)
	if err != nil {
		return TokenView{}, "", err
	}
	detail = fmt.Sprintf("token %q for user %q", name, u.Name)
	if u.Disabled {
		return TokenView{}, "", fmt.Errorf("auth: user %q: %w", u.Name, ErrDisabled)
	}
	token, err = newAPIToken()
	if err != nil {
		return TokenView{}, "", err
	}
	row := &store.APIToken{UserID: u.ID, Name: name, TokenHash: hashToken(token), CreatedAt: s.now(),
		TokenPrefix: token[len(TokenPrefix) : len(TokenPrefix)+TokenPrefixLen]}
	switch err := s.db.CreateAPIToken(ctx, row, MaxTokensPerUser); {
	case errors.Is(err, store.ErrLimit):
		return TokenView{}, "", fmt.Errorf("%w: user %q already holds %d API tokens; revoke one first", ErrLimit, u.Name, MaxTokensPerUser)
	case errors.Is(err, store.ErrInvalid):
		return TokenView{}, "", fmt.Errorf("%w: user %q", ErrNotFound, u.Name)
	case err != nil:
		return TokenView{}, "", fmt.Errorf("auth: create API token: %w", err)
	}
	detail = fmt.Sprintf("token %d %q for user %q", row.ID, name, u.Name)
	return tokenViewOf(*row, u.Name), token, nil
}

// Tokens lists API tokens, oldest first: p's own for userName "" (every user's when p is an
// admin), or those of userName (another user's need an admin: ErrForbidden).
func (s *Service) Tokens(ctx context.Context, p Principal, userName string) ([]TokenView, error) {
	if userName == "" && p.CanChange() {
		return s.allTokens(ctx)
	}
	u, err := s.tokenOwner(ctx, p, userName)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.ListUserAPITokens(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	out := make([]TokenView, 0, len(rows))
	for _, t := range rows {
		out = append(out, tokenViewOf(t, u.Name))
	}
	return out, nil
}

func (s *Service) allTokens(ctx context.Context) ([]TokenView, error) {
	users, err := s.db.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	names := make(map[uint]string, len(users))
	for _, u := range users {
		names[u.ID] = u.Name
	}
	rows, err := s.db.ListAPITokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	out := make([]TokenView, 0, len(rows))
	for _, t := range rows {
		out = append(out, tokenViewOf(t, names[t.UserID]))
	}
	return out, nil
}

// RevokeToken deletes the API token with that id: p's own, or anyone's for an admin. A token of
// somebody else answers ErrNotFound, like one that does not exist, so that ids tell nothing.
// Nothing is published on the revocation feed: a token has no websockets, and it stops working
// at its next use.
func (s *Service) RevokeToken(ctx context.Context, p Principal, id uint) (err error) {
	detail := fmt.Sprintf("token %d", id)
	defer func() { s.audit(ctx, p, actionTokenRevoke, detail, err) }()
	t, err := s.db.GetAPIToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && t.UserID != p.UserID && !p.CanChange() {
		return fmt.Errorf("%w: API token %d", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	detail = fmt.Sprintf("token %d %q of user %d", id, t.Name, t.UserID)
	if err := s.db.DeleteAPIToken(ctx, id); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: API token %d", ErrNotFound, id)
	} else if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// TokenPrincipal returns who an API token acts for, with the user's current role. It returns an
// error wrapping ErrBadToken when the token is malformed, unknown or expired, or its user is
// gone, disabled or has a bad stored role; other errors are the database's. Use is recorded in
// last_used_at at most once per TouchInterval.
func (s *Service) TokenPrincipal(ctx context.Context, token string) (Principal, error) {
	if !wellFormedAPIToken(token) {
		return Principal{}, fmt.Errorf("%w: malformed", ErrBadToken)
	}
	t, err := s.db.GetAPITokenByHash(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: unknown or revoked", ErrBadToken)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: read API token: %w", err)
	}
	now := s.now()
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return Principal{}, fmt.Errorf("%w: token %d expired", ErrBadToken, t.ID)
	}
	u, err := s.db.GetUserByID(ctx, t.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: token %d: the user is gone", ErrBadToken, t.ID)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: read API token: %w", err)
	}
	if u.Disabled {
		return Principal{}, fmt.Errorf("%w: token %d: user %q is disabled", ErrBadToken, t.ID, u.Name)
	}
	p, err := principalOf(u)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: token %d: %w", ErrBadToken, t.ID, err)
	}
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) >= TouchInterval {
		if err := s.db.TouchAPIToken(ctx, t.ID, now); err != nil {
			s.log.WarnContext(ctx, "API token use not recorded", "user", u.Name, "token_id", t.ID, "err", err)
		}
	}
	return p, nil
}
