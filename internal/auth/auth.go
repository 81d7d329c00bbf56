// Package auth knows who may act on the panel: users and their roles, passwords (argon2id), the
// mapping of local Unix accounts to users, browser sessions, API tokens, sign-in rate limits,
// and the audit records of all of these.
//
// Every method that acts for somebody takes the acting Principal right after ctx and checks it:
// only admins manage users; everybody may change their own password and manage their own API
// tokens. The package starts no goroutines: expired sessions go when the daemon calls
// PurgeExpired.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ikabud/panel/internal/store"
)

// Sentinel errors callers branch on; errors of this package wrap them with %w.
var (
	// ErrInvalid: an input value breaks a rule. The error is an *InvalidError naming the field.
	ErrInvalid = errors.New("auth: invalid")
	// ErrBadCredentials: unknown user, wrong password, or a user without a password. The
	// three are deliberately indistinguishable.
	ErrBadCredentials = errors.New("auth: bad credentials")
	// ErrUnknownUID: a Unix uid that maps to no usable user. PrincipalForUID returns it for a
	// disabled user too, wrapped together with ErrDisabled.
	ErrUnknownUID = errors.New("auth: unknown unix uid")
	// ErrDisabled: the user is disabled. Login says so only after the right password.
	ErrDisabled = errors.New("auth: user is disabled")
	// ErrForbidden: the acting principal may not do this.
	ErrForbidden = errors.New("auth: forbidden")
	// ErrNotFound: no such user or API token, or an API token of somebody else (so that token
	// ids do not tell what exists).
	ErrNotFound = errors.New("auth: not found")
	// ErrNoSession: the session token is unknown, malformed or expired, or its user is gone,
	// disabled or has a bad stored role. The browser must sign in again.
	ErrNoSession = errors.New("auth: no session")
	// ErrBadToken: the API token is unknown, malformed or expired, or its user is gone,
	// disabled or has a bad stored role.
	ErrBadToken = errors.New("auth: bad API token")
	// ErrRateLimited: too many failed sign-ins; the error is a *RateLimitError saying how
	// long to wait.
	ErrRateLimited = errors.New("auth: rate limited")
	// ErrLimit: a bound was reached, such as the API tokens per user or the revocation
	// subscribers.
	ErrLimit = errors.New("auth: limit reached")
)

// InvalidError says which input field broke which rule. It matches ErrInvalid under errors.Is.
type InvalidError struct {
	// Field is "name", "role", "password", "current_password", "uid" or "user".
	Field string
	// Rule is what the value must be, for a person to act on. It never quotes a password.
	Rule string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("auth: invalid %s: %s", e.Field, e.Rule) }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, rule string, args ...any) error {
	return &InvalidError{Field: field, Rule: fmt.Sprintf(rule, args...)}
}

// Role is what a user may do.
type Role string

// The roles. Admins may do everything; support staff may read everything and view logs but
// change nothing; customers may start, stop and watch only the instances they own.
const (
	RoleAdmin    Role = "admin"
	RoleSupport  Role = "support"
	RoleCustomer Role = "customer"
)

// ParseRole returns the role named s (exact, lower case), or an *InvalidError for field "role".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleSupport, RoleCustomer:
		return r, nil
	}
	return "", invalid("role", "%q is not one of admin, support, customer", s)
}

// User names: 2 to 32 characters, a lower-case letter first, then lower-case letters, digits,
// '_', '.' or '-'. Short and plain so that a name is safe in logs, audit records, URLs and the
// command line, and cannot pass for another name.
const (
	minNameLen = 2
	maxNameLen = 32
	nameRule   = "must be 2 to 32 characters: a lower-case letter (a-z), then lower-case letters, digits, '_', '.' or '-'"
)

// rootName is the name of the local root principal; no user may take it, so that "root" in the
// audit log always means the machine's root.
const rootName = "root"

// ValidateUserName checks s against the allow-list for user names and returns an *InvalidError
// for field "name" that states the rule.
func ValidateUserName(s string) error {
	if len(s) < minNameLen || len(s) > maxNameLen {
		return invalid("name", "%q is %d bytes long; %s", s, len(s), nameRule)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-')
		if !ok {
			return invalid("name", "%q has %q at position %d; %s", s, rune(c), i+1, nameRule)
		}
	}
	if s == rootName {
		return invalid("name", "%q is reserved for the machine's root account", s)
	}
	return nil
}

// Passwords are counted in bytes. The upper bound keeps the work of hashing a password from a
// request small; bcrypt's 72-byte limit no longer applies since new hashes are argon2id.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 256
)

// validatePassword checks the length of a new password, for the field named.
func validatePassword(field, password string) error {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return invalid(field, "must be %d to %d bytes long", MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// Unix uids a user may be mapped to: 0 is root, which is always an admin without a user row;
// 4294967295 is (uid_t)-1, "no uid".
const (
	minUID = 1
	maxUID = 4294967294
)

// Options tunes a Service. The zero value is production.
type Options struct {
	// Argon2 is the cost of new password hashes; the zero value means DefaultArgon2Params().
	// Tests use tiny costs such as {MemoryKiB: 64, Time: 1, Threads: 1}. Costs outside the
	// bounds that CheckArgon2Params states make NewServiceWith panic: they are set in code,
	// never from input.
	Argon2 Argon2Params
	// Now is the clock of sessions, tokens and the sign-in rate limits; nil means time.Now.
	// Tests move it instead of sleeping.
	Now func() time.Time
}

// Service manages users, passwords, sessions and API tokens, and answers who is acting. It is
// safe for concurrent use and starts no goroutines.
type Service struct {
	db     *store.DB
	log    *slog.Logger
	argon2 Argon2Params
	now    func() time.Time
	limits *loginLimiter
	feed   *revocationFeed
	// argon2Runs counts argon2id computations of password checks, so that
	// tests can tell that every failure path costs one (export_test.go).
	argon2Runs atomic.Uint64
	// hashSlots bounds the argon2id computations running at once (idKey).
	hashSlots chan struct{}
	// hashing and hashPeak count the computations running, and the most
	// ever at once (export_test.go).
	hashing, hashPeak atomic.Int64
}

// NewService returns a Service with production options.
func NewService(db *store.DB, log *slog.Logger) *Service {
	return NewServiceWith(db, log, Options{})
}

// NewServiceWith returns a Service with the given options.
func NewServiceWith(db *store.DB, log *slog.Logger, opts Options) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	params := opts.Argon2
	if params == (Argon2Params{}) {
		params = DefaultArgon2Params()
	}
	if err := CheckArgon2Params(params); err != nil {
		panic(fmt.Sprintf("auth: Options.Argon2: %v", err))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Service{
		db:        db,
		log:       log,
		argon2:    params,
		now:       now,
		limits:    newLoginLimiter(),
		hashSlots: make(chan struct{}, max(runtime.NumCPU(), 1)),
		feed:      newRevocationFeed(),
	}
}

// AddUser validates and creates a user. password may be "" only when uid is set: such a user
// acts only through the panel's Unix socket. It returns an *InvalidError (ErrInvalid) naming
// the field for a bad value, and an error wrapping store.ErrConflict if the name or uid is taken.
// It checks no permission and writes no audit record: it is for the command line run by root
// and for CreateUser, which does both.
func (s *Service) AddUser(ctx context.Context, name string, role Role, password string, uid *int) (*store.User, error) {
	if err := ValidateUserName(name); err != nil {
		return nil, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, err
	}
	if uid != nil && (int64(*uid) < minUID || int64(*uid) > maxUID) {
		return nil, invalid("uid", "%d is not a Unix uid that can be mapped: it must be %d to %d (uid 0 is root, always an admin)",
			*uid, minUID, maxUID)
	}
	var hash string
	switch {
	case password == "" && uid == nil:
		return nil, invalid("password", "is required for a user without a Unix uid")
	case password == "":
		// A uid-only user: no hash, so no password ever matches.
	default:
		if err := validatePassword("password", password); err != nil {
			return nil, err
		}
		var err error
		if hash, err = s.hashPassword(password); err != nil {
			return nil, fmt.Errorf("auth: add user %q: %w", name, err)
		}
	}
	u := &store.User{Name: name, Role: string(role), PasswordHash: hash, UnixUID: uid}
	if err := s.db.CreateUser(ctx, u); err != nil {
		return nil, fmt.Errorf("auth: add user: %w", err)
	}
	s.log.InfoContext(ctx, "user added", "user", name, "role", string(role), "unix_uid", uidAttr(uid))
	return u, nil
}

func uidAttr(uid *int) any {
	if uid == nil {
		return nil
	}
	return *uid
}

// Principal is who is acting: a user, or the machine's root over the Unix socket (UserID 0).
type Principal struct {
	UserID uint
	Name   string
	Role   Role
}

// CanChange reports whether p may create, remove and reconfigure instances and users: admins only.
// Starting and stopping an owned instance is a separate, per-instance check.
func (p Principal) CanChange() bool { return p.Role == RoleAdmin }

// actorID is p's user id for an audit record: nil for root, who has no user row.
func (p Principal) actorID() *uint {
	if p.UserID == 0 {
		return nil
	}
	return new(p.UserID)
}

// principalOf turns a stored user into a principal, refusing a user whose stored role is not a
// known role (fail closed).
func principalOf(u *store.User) (Principal, error) {
	role, err := ParseRole(u.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("user %q has a bad stored role: %w", u.Name, err)
	}
	return Principal{UserID: u.ID, Name: u.Name, Role: role}, nil
}

// PrincipalForUID maps the Unix uid of a socket peer (SO_PEERCRED) to a principal: uid 0 is
// root, an admin; any other uid is the user mapped to it, else an error wrapping ErrUnknownUID.
// A mapped user who is disabled is refused with an error wrapping both ErrUnknownUID and
// ErrDisabled, so that callers which only know ErrUnknownUID still refuse. A mapped user whose
// stored role is not a known role is refused (fail closed).
func (s *Service) PrincipalForUID(ctx context.Context, uid int) (Principal, error) {
	if uid == 0 {
		return Principal{Name: rootName, Role: RoleAdmin}, nil
	}
	if int64(uid) < minUID || int64(uid) > maxUID {
		return Principal{}, fmt.Errorf("%w: %d", ErrUnknownUID, uid)
	}
	u, err := s.db.GetUserByUnixUID(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: %d", ErrUnknownUID, uid)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: principal for uid %d: %w", uid, err)
	}
	if u.Disabled {
		return Principal{}, fmt.Errorf("%w: %d: %w: %q", ErrUnknownUID, uid, ErrDisabled, u.Name)
	}
	p, err := principalOf(u)
	if err != nil {
		return Principal{}, fmt.Errorf("auth: principal for uid %d: %w", uid, err)
	}
	return p, nil
}
