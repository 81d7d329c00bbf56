package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/ikabud/panel/internal/randtext"
	"github.com/ikabud/panel/internal/store"
)

// Argon2Params are the costs of an argon2id hash.
type Argon2Params struct {
	// MemoryKiB is the memory of one hash, in KiB (argon2's m).
	MemoryKiB uint32
	// Time is the number of passes over the memory (argon2's t).
	Time uint32
	// Threads is the parallelism (argon2's p).
	Threads uint8
}

// Production costs of new hashes: 64 MiB, 3 passes, 2 lanes (well above OWASP's minimum for
// argon2id, and about a tenth of a second on the panel's machines).
const (
	DefaultArgon2MemoryKiB = 64 * 1024
	DefaultArgon2Time      = 3
	DefaultArgon2Threads   = 2
)

// DefaultArgon2Params returns the production costs.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{MemoryKiB: DefaultArgon2MemoryKiB, Time: DefaultArgon2Time, Threads: DefaultArgon2Threads}
}

// Bounds of the costs a hash may have. A stored hash is only ever checked within them, so a
// tampered row cannot make a sign-in take gigabytes or minutes.
const (
	MaxArgon2MemoryKiB = 1 << 20 // 1 GiB
	MaxArgon2Time      = 16
	MaxArgon2Threads   = 16
	// maxBcryptCost bounds old bcrypt hashes the same way (each step doubles the work; the
	// panel made them at 12).
	maxBcryptCost = 14
)

// Salt and key lengths: new hashes use 16 and 32 bytes; stored hashes may have 8 to 64.
const (
	argon2SaltLen = 16
	argon2KeyLen  = 32
	minStoredLen  = 8
	maxStoredLen  = 64
)

// CheckArgon2Params returns an error unless p is within the bounds: 1 to MaxArgon2Threads
// threads, 1 to MaxArgon2Time passes, and 8 KiB per thread up to MaxArgon2MemoryKiB.
func CheckArgon2Params(p Argon2Params) error {
	switch {
	case p.Threads < 1 || p.Threads > MaxArgon2Threads:
		return fmt.Errorf("argon2 threads %d out of 1..%d", p.Threads, MaxArgon2Threads)
	case p.Time < 1 || p.Time > MaxArgon2Time:
		return fmt.Errorf("argon2 time %d out of 1..%d", p.Time, MaxArgon2Time)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > MaxArgon2MemoryKiB:
		return fmt.Errorf("argon2 memory %d KiB out of %d..%d", p.MemoryKiB, 8*uint32(p.Threads), MaxArgon2MemoryKiB)
	}
	return nil
}

// b64 is the PHC string encoding: standard alphabet, no padding, canonical (strict) only.
var b64 = base64.RawStdEncoding.Strict()

const argon2idPrefix = "$argon2id$"

// hashPassword returns the argon2id PHC string of password with a fresh salt:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<key>.
func (s *Service) hashPassword(password string) (string, error) {
	p := s.argon2
	salt := make([]byte, argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: salt: %w", err)
	}
	key := s.idKey([]byte(password), salt, p, argon2KeyLen)
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", argon2idPrefix, argon2.Version,
		p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// argon2Hash is a parsed argon2id PHC string.
type argon2Hash struct {
	params    Argon2Params
	salt, key []byte
}

// parseArgon2id parses a PHC string strictly (fields in the canonical order, no extras) and
// refuses costs, salts and keys outside the bounds.
func parseArgon2id(s string) (argon2Hash, error) {
	var h argon2Hash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, errors.New("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return h, fmt.Errorf("argon2 version %q is not v=%d", parts[2], argon2.Version)
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return h, errors.New("argon2 parameters are not m=,t=,p=")
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(kv[i], name+"=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || v != strconv.FormatUint(n, 10) {
			return h, fmt.Errorf("argon2 parameter %q is not %s=<number>", kv[i], name)
		}
		vals[i] = n
	}
	if vals[2] > MaxArgon2Threads {
		return h, fmt.Errorf("argon2 threads %d out of 1..%d", vals[2], MaxArgon2Threads)
	}
	h.params = Argon2Params{MemoryKiB: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2])}
	if err := CheckArgon2Params(h.params); err != nil {
		return h, err
	}
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < minStoredLen || len(h.salt) > maxStoredLen {
		return h, fmt.Errorf("argon2 salt is not %d to %d bytes of base64", minStoredLen, maxStoredLen)
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil || len(h.key) < minStoredLen || len(h.key) > maxStoredLen {
		return h, fmt.Errorf("argon2 key is not %d to %d bytes of base64", minStoredLen, maxStoredLen)
	}
	return h, nil
}

// errUnusableHash: the stored hash cannot be checked (unknown format, or costs out of bounds).
var errUnusableHash = errors.New("stored password hash unusable")

// verifyPassword checks password against a stored hash in constant time. stale says the hash
// should be replaced by one at the service's current costs (bcrypt, or other argon2 costs).
func (s *Service) verifyPassword(stored, password string) (ok, stale bool, err error) {
	switch {
	case strings.HasPrefix(stored, argon2idPrefix):
		h, err := parseArgon2id(stored)
		if err != nil {
			return false, false, fmt.Errorf("%w: %w", errUnusableHash, err)
		}
		key := s.idKey([]byte(password), h.salt, h.params, uint32(len(h.key)))
		s.argon2Runs.Add(1)
		ok = subtle.ConstantTimeCompare(key, h.key) == 1
		stale = h.params != s.argon2 || len(h.salt) != argon2SaltLen || len(h.key) != argon2KeyLen
		return ok, stale, nil
	case strings.HasPrefix(stored, "$2a$"), strings.HasPrefix(stored, "$2b$"), strings.HasPrefix(stored, "$2y$"):
		cost, err := bcrypt.Cost([]byte(stored))
		if err != nil {
			return false, false, fmt.Errorf("%w: %w", errUnusableHash, err)
		}
		if cost > maxBcryptCost {
			return false, false, fmt.Errorf("%w: bcrypt cost %d above %d", errUnusableHash, cost, maxBcryptCost)
		}
		// bcrypt compares in constant time itself. It refuses passwords over 72 bytes, which
		// no bcrypt hash of ours can match.
		err = bcrypt.CompareHashAndPassword([]byte(stored), []byte(password))
		switch {
		case err == nil:
			return true, true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword), errors.Is(err, bcrypt.ErrPasswordTooLong):
			return false, false, nil
		default:
			return false, false, fmt.Errorf("%w: %w", errUnusableHash, err)
		}
	default:
		return false, false, fmt.Errorf("%w: unknown format", errUnusableHash)
	}
}

// dummySalt salts the hash computed when there is no real hash to check. Its value does not
// matter; only the work does.
const dummySalt = "ikabud-dummy-salt"

// burnCompare spends the time of checking one password at the service's costs, so that a name
// that does not exist (or has no password) costs as much as a wrong password.
func (s *Service) burnCompare(password string) {
	if len(password) > MaxPasswordLen {
		password = password[:MaxPasswordLen]
	}
	key := s.idKey([]byte(password), []byte(dummySalt), s.argon2, argon2KeyLen)
	s.argon2Runs.Add(1)
	_ = subtle.ConstantTimeCompare(key, make([]byte, argon2KeyLen))
}

// CheckPassword returns the user if name and password match, and ErrBadCredentials (wrapped)
// otherwise: for an unknown name, a wrong password, or a user without a password. Each of
// those costs one argon2id computation, so their timing does not tell them apart. A disabled
// user with the right password gets an error wrapping ErrDisabled. A stored hash that cannot be
// checked (unknown format, or costs beyond the bounds, as a tampered row may have) is an error
// of its own, as are database errors.
//
// After a match, a hash made with bcrypt or with other costs is replaced by an argon2id hash at
// the service's costs; failing to replace it is logged and does not fail the check.
func (s *Service) CheckPassword(ctx context.Context, name, password string) (*store.User, error) {
	u, err := s.db.GetUserByName(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("auth: check password: %w", err)
	}
	if err != nil || u.PasswordHash == "" || len(password) > MaxPasswordLen {
		s.burnCompare(password)
		return nil, fmt.Errorf("%w: user %q", ErrBadCredentials, name)
	}
	ok, stale, err := s.verifyPassword(u.PasswordHash, password)
	if err != nil {
		return nil, fmt.Errorf("auth: check password of %q: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: user %q", ErrBadCredentials, name)
	}
	if u.Disabled {
		return nil, fmt.Errorf("auth: user %q: %w", name, ErrDisabled)
	}
	if stale {
		s.rehash(ctx, u, password)
	}
	return u, nil
}

// rehash replaces u's stored hash by one at the service's costs, unless the password was
// changed meanwhile.
func (s *Service) rehash(ctx context.Context, u *store.User, password string) {
	hash, err := s.hashPassword(password)
	if err == nil {
		err = s.db.UpdateUser(ctx, u.ID, store.UserUpdate{PasswordHash: &hash, IfPasswordHash: &u.PasswordHash})
	}
	if err != nil {
		s.log.WarnContext(ctx, "password hash not upgraded", "user", u.Name, "err", err)
		return
	}
	u.PasswordHash = hash
	s.log.InfoContext(ctx, "password hash upgraded to argon2id", "user", u.Name)
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
	pw, err := randtext.From(passwordAlphabet, GeneratedPasswordLen)
	if err != nil {
		return "", fmt.Errorf("auth: generate password: %w", err)
	}
	return pw, nil
}

// idKey computes one argon2id key. At most one per CPU runs at once: each
// takes MemoryKiB of memory (64 MiB in production), so a burst of sign-ins
// must queue rather than add up to gigabytes.
func (s *Service) idKey(password, salt []byte, p Argon2Params, keyLen uint32) []byte {
	s.hashSlots <- struct{}{}
	defer func() { <-s.hashSlots }()
	n := s.hashing.Add(1)
	defer s.hashing.Add(-1)
	for peak := s.hashPeak.Load(); n > peak && !s.hashPeak.CompareAndSwap(peak, n); peak = s.hashPeak.Load() {
	}
	return argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
}
