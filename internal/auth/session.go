package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ikabud/panel/internal/store"
)

// Session lifetimes. A session ends SessionIdleTimeout after it was last used, and
// SessionLifetime after sign-in whatever happens. Use is written down at most once per
// TouchInterval (not on every request), so the idle end may come up to that much early.
const (
	SessionIdleTimeout = 12 * time.Hour
	SessionLifetime    = 7 * 24 * time.Hour
	TouchInterval      = time.Minute
)

// sessionTokenBytes is the randomness of a session token; it travels as base64url without
// padding (43 characters).
const sessionTokenBytes = 32

// csrfLabel is what the CSRF token is the HMAC of, keyed with the session token.
const csrfLabel = "ikabud-csrf"

// Session is a signed-in browser. It is not a view: it holds the session's secret.
type Session struct {
	// Token is the secret the browser holds (the cookie value). It is stored nowhere and
	// never marshalled.
	Token string `json:"-"`
	// ID is the hex SHA-256 of Token: the key of the stored session, safe to log shortened.
	ID string
	// Principal is the user, with the role stored at the time the session was read.
	Principal Principal
	// ExpiresAt is the absolute end of the session (for the cookie's Expires); it ends sooner
	// after SessionIdleTimeout without use.
	ExpiresAt time.Time
	// CSRF is the token forms and non-GET requests must echo; see CheckCSRF.
	CSRF string
}

// newSessionToken returns a fresh random session token.
func newSessionToken() (string, error) {
	b := make([]byte, sessionTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: session token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// wellFormedSessionToken reports whether token could be one of ours, so that junk never
// reaches the database.
func wellFormedSessionToken(token string) bool {
	if len(token) != base64.RawURLEncoding.EncodedLen(sessionTokenBytes) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	return err == nil && len(b) == sessionTokenBytes
}

// hashToken is the stored form of a session or API token: hex SHA-256. The tokens carry 256
// random bits, so a fast hash is enough; what matters is that the database never holds them.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// csrfFor derives the CSRF token of a session from its token: only the browser and the panel
// know the session token, so only they can compute it, and it needs no storage or server key
// (it survives a restart with the session).
func csrfFor(token string) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(csrfLabel))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// CheckCSRF reports, in constant time, whether given is the CSRF token of sess. It is false
// for a session without a token and for an empty given.
func CheckCSRF(sess Session, given string) bool {
	if sess.Token == "" || given == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(csrfFor(sess.Token)), []byte(given)) == 1
}

// Login checks name and password and starts a session with a new random token (so also a new
// session id: a session id set before sign-in is never carried over).
//
// It refuses with a *RateLimitError (ErrRateLimited) when the name or the client address had
// too many failed sign-ins, without checking the password. A wrong name or password is
// ErrBadCredentials (and counts as a failure), a disabled user with the right password
// ErrDisabled. A success clears the name's failures. Every attempt is audited.
func (s *Service) Login(ctx context.Context, name, password string, client netip.Addr) (Session, error) {
	now := s.now()
	actor, detail := auditName(name)
	detail += "client " + client.Unmap().String()
	acct, addr := accountKey(name), addressKey(client)

	if wait := s.limits.take(acct, addr, now); wait > 0 {
		s.record(ctx, actor, nil, actionLogin, resultRefused, "rate limited, "+detail)
		return Session{}, &RateLimitError{RetryAfter: wait}
	}
	u, err := s.CheckPassword(ctx, name, password)
	switch {
	case errors.Is(err, ErrBadCredentials):
		s.record(ctx, actor, nil, actionLogin, resultRefused, "bad credentials, "+detail)
		return Session{}, err
	case errors.Is(err, ErrDisabled):
		// The password was right: not a guess, so not counted.
		s.limits.refund(acct, addr, now)
		s.record(ctx, actor, nil, actionLogin, resultRefused, "user disabled, "+detail)
		return Session{}, err
	case err != nil:
		s.limits.refund(acct, addr, now)
		s.record(ctx, actor, nil, actionLogin, resultError, detail+": "+err.Error())
		return Session{}, err
	}
	s.limits.succeeded(acct, addr, now)

	sess, err := s.startSession(ctx, u, now)
	if err != nil {
		s.record(ctx, u.Name, &u.ID, actionLogin, resultError, detail+": "+err.Error())
		return Session{}, err
	}
	s.record(ctx, u.Name, &u.ID, actionLogin, resultOK, detail)
	return sess, nil
}

func (s *Service) startSession(ctx context.Context, u *store.User, now time.Time) (Session, error) {
	p, err := principalOf(u)
	if err != nil {
		return Session{}, fmt.Errorf("auth: sign in: %w", err)
	}
	token, err := newSessionToken()
	if err != nil {
		return Session{}, err
	}
	row := &store.Session{ID: hashToken(token), UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(SessionLifetime)}
	if err := s.db.CreateSession(ctx, row); err != nil {
		return Session{}, fmt.Errorf("auth: sign in %q: %w", u.Name, err)
	}
	return Session{Token: token, ID: row.ID, Principal: p, ExpiresAt: row.ExpiresAt, CSRF: csrfFor(token)}, nil
}

// SessionPrincipal returns the session of a token with the user's current role. It returns an
// error wrapping ErrNoSession when the token is malformed or unknown, the session ended (idle
// or absolute), or the user is gone, disabled or has a bad stored role; other errors are the
// database's. An expired session is deleted on the way. Use is recorded at most once per
// TouchInterval.
func (s *Service) SessionPrincipal(ctx context.Context, token string) (Session, error) {
	if !wellFormedSessionToken(token) {
		return Session{}, fmt.Errorf("%w: malformed token", ErrNoSession)
	}
	id, now := hashToken(token), s.now()
	row, p, err := s.checkSession(ctx, id, now)
	if err != nil {
		return Session{}, err
	}
	if now.Sub(row.LastSeenAt) >= TouchInterval {
		if err := s.db.TouchSession(ctx, id, now); err != nil {
			// Not fatal: the session is valid; at worst it ends a minute early.
			s.log.WarnContext(ctx, "session use not recorded", "user", p.Name, "err", err)
		}
	}
	return Session{Token: token, ID: id, Principal: p, ExpiresAt: row.ExpiresAt, CSRF: csrfFor(token)}, nil
}

// SessionValid reports whether the session with that id (Session.ID, not the token) still
// holds, by the rules of SessionPrincipal, for re-checking long-lived connections such as
// websockets. It does not count as use of the session: an open page alone does not keep a
// session from going idle. It is false, failing closed, when the database cannot be read.
func (s *Service) SessionValid(ctx context.Context, sessionID string) bool {
	if len(sessionID) != hex.EncodedLen(sha256.Size) {
		return false
	}
	_, _, err := s.checkSession(ctx, sessionID, s.now())
	if err != nil && !errors.Is(err, ErrNoSession) {
		s.log.WarnContext(ctx, "session re-check failed; treated as ended", "err", err)
	}
	return err == nil
}

// checkSession reads the session with that id and its user, and checks both at now. An
// expired session is deleted.
func (s *Service) checkSession(ctx context.Context, id string, now time.Time) (*store.Session, Principal, error) {
	row, err := s.db.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Principal{}, fmt.Errorf("%w: unknown or ended", ErrNoSession)
	}
	if err != nil {
		return nil, Principal{}, fmt.Errorf("auth: read session: %w", err)
	}
	if !now.Before(row.ExpiresAt) || !now.Before(row.LastSeenAt.Add(SessionIdleTimeout)) {
		if err := s.db.DeleteSession(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.WarnContext(ctx, "expired session not deleted", "user_id", row.UserID, "err", err)
		}
		return nil, Principal{}, fmt.Errorf("%w: expired", ErrNoSession)
	}
	u, err := s.db.GetUserByID(ctx, row.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Principal{}, fmt.Errorf("%w: the user is gone", ErrNoSession)
	}
	if err != nil {
		return nil, Principal{}, fmt.Errorf("auth: read session: %w", err)
	}
	if u.Disabled {
		return nil, Principal{}, fmt.Errorf("%w: user %q is disabled", ErrNoSession, u.Name)
	}
	p, err := principalOf(u)
	if err != nil {
		return nil, Principal{}, fmt.Errorf("%w: %w", ErrNoSession, err)
	}
	return row, p, nil
}

// Logout ends the session of token. A token without a session (malformed, unknown, already
// ended) is not an error: the session is gone either way. An ended session is audited. It is
// not published on the revocation feed, which ends every session's sockets of the user: the
// caller ends this session's own (and SessionValid fails for it from now on).
func (s *Service) Logout(ctx context.Context, token string) error {
	if !wellFormedSessionToken(token) {
		return nil
	}
	id := hashToken(token)
	row, err := s.db.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: sign out: %w", err)
	}
	err = s.db.DeleteSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // ended meanwhile by someone else, who audited it
	}
	if err != nil {
		return fmt.Errorf("auth: sign out: %w", err)
	}
	actor := "?"
	if u, err := s.db.GetUserByID(ctx, row.UserID); err == nil {
		actor = u.Name
	}
	s.record(ctx, actor, new(row.UserID), actionLogout, resultOK, "session "+id[:8])
	return nil
}

// PurgeExpired deletes the sessions that ended (idle or absolute) and returns how many. The
// daemon calls it now and then; until then an ended session is refused all the same.
func (s *Service) PurgeExpired(ctx context.Context) (int, error) {
	now := s.now()
	n, err := s.db.DeleteExpiredSessions(ctx, now, now.Add(-SessionIdleTimeout))
	if err != nil {
		return 0, fmt.Errorf("auth: purge expired sessions: %w", err)
	}
	return int(n), nil
}
