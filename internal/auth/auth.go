// Package auth knows who may act on the panel: users and their roles, passwords, the mapping
// of local Unix accounts to users, and (later) sessions, API tokens and ownership checks.
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/ikabud/panel/internal/store"
)

// Sentinel errors callers branch on; errors of this package wrap them with %w.
var (
	// ErrInvalid: an input value breaks a rule. The error is an *InvalidError naming the field.
	ErrInvalid = errors.New("auth: invalid")
	// ErrBadCredentials: unknown user, wrong password, or a user without a password. The
	// three are deliberately indistinguishable.
	ErrBadCredentials = errors.New("auth: bad credentials")
	// ErrUnknownUID: a Unix uid that maps to no user.
	ErrUnknownUID = errors.New("auth: unknown unix uid")
)

// InvalidError says which input field broke which rule. It matches ErrInvalid under errors.Is.
type InvalidError struct {
	Field string // "name", "role", "password" or "uid"
	Rule  string // what the value must be, for a person to act on
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

// Passwords are bounded by bcrypt, which reads at most 72 bytes.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 72
)

// Unix uids a user may be mapped to: 0 is root, which is always an admin without a user row;
// 4294967295 is (uid_t)-1, "no uid".
const (
	minUID = 1
	maxUID = 4294967294
)

// DefaultBcryptCost is the bcrypt cost used in production.
const DefaultBcryptCost = 12

// Options tunes a Service. The zero value is production.
type Options struct {
	// BcryptCost is the cost of new password hashes; 0 means DefaultBcryptCost. Tests use
	// bcrypt.MinCost.
	BcryptCost int
}

// Service manages users and answers who is acting.
type Service struct {
	db   *store.DB
	log  *slog.Logger
	cost int

	// dummyHash is compared against when there is no real hash to compare, so that a name
	// that does not exist costs as much time as a wrong password.
	dummyOnce sync.Once
	dummyHash []byte
	dummyErr  error
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
	cost := opts.BcryptCost
	if cost == 0 {
		cost = DefaultBcryptCost
	}
	return &Service{db: db, log: log, cost: cost}
}

// AddUser validates and creates a user. password may be "" only when uid is set: such a user
// acts only through the panel's Unix socket. It returns an *InvalidError (ErrInvalid) naming
// the field for a bad value, and an error wrapping store.ErrConflict if the name or uid is taken.
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
	var hash []byte
	switch {
	case password == "" && uid == nil:
		return nil, invalid("password", "is required for a user without a Unix uid")
	case password == "":
		// A uid-only user: no hash, so no password ever matches.
	case len(password) < MinPasswordLen || len(password) > MaxPasswordLen:
		return nil, invalid("password", "must be %d to %d bytes long", MinPasswordLen, MaxPasswordLen)
	default:
		var err error
		if hash, err = bcrypt.GenerateFromPassword([]byte(password), s.cost); err != nil {
			return nil, fmt.Errorf("auth: add user %q: hash password: %w", name, err)
		}
	}
	u := &store.User{Name: name, Role: string(role), PasswordHash: string(hash), UnixUID: uid}
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

// CheckPassword returns the user if name and password match, and ErrBadCredentials (wrapped)
// otherwise: for an unknown name, a wrong password, or a user without a password. Each of
// those costs one bcrypt comparison, so their timing does not tell them apart. Other errors
// (the database) are returned as they are.
func (s *Service) CheckPassword(ctx context.Context, name, password string) (*store.User, error) {
	u, err := s.db.GetUserByName(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("auth: check password: %w", err)
	}
	if err != nil || u.PasswordHash == "" || len(password) > MaxPasswordLen {
		s.burnCompare(password)
		return nil, fmt.Errorf("%w: user %q", ErrBadCredentials, name)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return nil, fmt.Errorf("%w: user %q", ErrBadCredentials, name)
		}
		return nil, fmt.Errorf("auth: check password of %q: stored hash unusable: %w", name, err)
	}
	return u, nil
}

// burnCompare spends the time of one bcrypt comparison at the service's cost.
func (s *Service) burnCompare(password string) {
	s.dummyOnce.Do(func() {
		s.dummyHash, s.dummyErr = bcrypt.GenerateFromPassword([]byte("ikabud-dummy-password"), s.cost)
	})
	if s.dummyErr == nil {
		if len(password) > MaxPasswordLen {
			password = password[:MaxPasswordLen]
		}
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
	}
}

// passwordAlphabet leaves out characters that are easy to misread (0 O o 1 l I) or awkward to
// type or quote in a shell.
const passwordAlphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratedPasswordLen is the length of GeneratePassword's passwords: 20 characters of a
// 56-character alphabet, about 116 bits.
const GeneratedPasswordLen = 20

// GeneratePassword returns a random password of GeneratedPasswordLen characters from
// crypto/rand, for `panel user add` to print once.
func GeneratePassword() (string, error) {
	out := make([]byte, GeneratedPasswordLen)
	// Rejection sampling: bytes at or above the largest multiple of the alphabet size would
	// make the first characters likelier than the rest.
	limit := byte(256 - 256%len(passwordAlphabet))
	buf := make([]byte, 64)
	for n := 0; n < len(out); {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("auth: generate password: %w", err)
		}
		for _, b := range buf {
			if b >= limit {
				continue
			}
			out[n] = passwordAlphabet[int(b)%len(passwordAlphabet)]
			if n++; n == len(out) {
				break
			}
		}
	}
	return string(out), nil
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

// PrincipalForUID maps the Unix uid of a socket peer (SO_PEERCRED) to a principal: uid 0 is
// root, an admin; any other uid is the user mapped to it, else an error wrapping ErrUnknownUID.
// A mapped user whose stored role is not a known role is refused (fail closed).
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
	role, err := ParseRole(u.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("auth: principal for uid %d: user %q has a bad stored role: %w", uid, u.Name, err)
	}
	return Principal{UserID: u.ID, Name: u.Name, Role: role}, nil
}
