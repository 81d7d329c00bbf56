package auth

import (
	"container/list"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Sign-in rate limits, kept in memory: at most MaxAccountFailures failed sign-ins per account
// name and MaxAddressFailures per client address (IPv6: per /64, what one customer usually
// holds) within FailureWindow. Past that, Login refuses without checking the password. Each
// table holds at most MaxLimiterEntries names or addresses; when full, the entry that failed
// least recently is forgotten first, so a flood of made-up names cannot grow memory.
const (
	MaxAccountFailures = 5
	MaxAddressFailures = 20
	FailureWindow      = 15 * time.Minute
	MaxLimiterEntries  = 10000
)

// maxAccountKeyLen bounds the bytes of a tried name kept as a table key; a valid name is
// at most maxNameLen.
const maxAccountKeyLen = 64

// RateLimitError is returned instead of checking a password when too many sign-ins failed. It
// matches ErrRateLimited under errors.Is.
type RateLimitError struct {
	// RetryAfter is how long until one more attempt is allowed (for a Retry-After header).
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("auth: too many failed sign-ins; try again in %s", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// accountKey is the limiter key of a tried name: the name itself, cut to a bounded length.
func accountKey(name string) string {
	if len(name) > maxAccountKeyLen {
		return name[:maxAccountKeyLen]
	}
	return name
}

// addressKey is the limiter key of a client address: an IPv4 address (also when it came
// IPv4-mapped in IPv6), or the /64 of an IPv6 address. Clients without a valid address share
// one key: they are limited together rather than not at all.
func addressKey(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is4():
		return a.String()
	default:
		p, err := a.Prefix(64)
		if err != nil {
			return "unknown"
		}
		return p.String()
	}
}

// loginLimiter counts failed sign-ins per account and per address.
type loginLimiter struct {
	mu        sync.Mutex
	accounts  *failureTable
	addresses *failureTable
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{
		accounts:  newFailureTable(MaxAccountFailures, FailureWindow, MaxLimiterEntries),
		addresses: newFailureTable(MaxAddressFailures, FailureWindow, MaxLimiterEntries),
	}
}

// take decides whether an attempt for account from address may go ahead; address "" is not
// counted. When one of them is over its limit it returns how long to wait and records nothing.
// Otherwise it returns 0 and records a failure at now for both in advance, so that attempts
// running at the same time cannot all slip under the limit; the caller takes it back with
// succeeded or refund when the attempt did not fail.
func (l *loginLimiter) take(account, address string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := l.accounts.wait(account, now)
	if address != "" {
		wait = max(wait, l.addresses.wait(address, now))
	}
	if wait > 0 {
		return wait
	}
	l.accounts.add(account, now)
	if address != "" {
		l.addresses.add(address, now)
	}
	return 0
}

// succeeded clears the account's failures and takes back the address's failure recorded at now
// by take.
func (l *loginLimiter) succeeded(account, address string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accounts.clear(account)
	l.addresses.remove(address, now)
}

// refund takes back the failures recorded at now by take, for an attempt that neither failed
// nor succeeded (the database was unavailable).
func (l *loginLimiter) refund(account, address string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accounts.remove(account, now)
	l.addresses.remove(address, now)
}

// failureTable holds the recent failure times of up to capacity keys, least recently failed
// first. It is not safe for concurrent use; loginLimiter locks it.
type failureTable struct {
	max      int
	window   time.Duration
	capacity int
	entries  map[string]*list.Element // of *failures
	order    *list.List               // front: least recently failed
}

// failures are the times of a key's failures within the window, oldest first, at most max.
type failures struct {
	key string
	at  []time.Time
}

func newFailureTable(maxFailures int, window time.Duration, capacity int) *failureTable {
	return &failureTable{
		max: maxFailures, window: window, capacity: capacity,
		entries: make(map[string]*list.Element), order: list.New(),
	}
}

// len returns the number of keys held.
func (t *failureTable) len() int { return len(t.entries) }

// prune drops the key's failures that left the window, and the key when none are left. It
// returns the failures still counted, or nil.
func (t *failureTable) prune(key string, now time.Time) *failures {
	el, ok := t.entries[key]
	if !ok {
		return nil
	}
	f := el.Value.(*failures)
	i := 0
	for i < len(f.at) && !f.at[i].After(now.Add(-t.window)) {
		i++
	}
	f.at = f.at[i:]
	if len(f.at) == 0 {
		t.order.Remove(el)
		delete(t.entries, key)
		return nil
	}
	return f
}

// wait returns how long until key may fail once more; 0 means now.
func (t *failureTable) wait(key string, now time.Time) time.Duration {
	f := t.prune(key, now)
	if f == nil || len(f.at) < t.max {
		return 0
	}
	// The oldest of the last max failures has to leave the window.
	return max(f.at[len(f.at)-t.max].Add(t.window).Sub(now), time.Second)
}

// add records a failure of key at now, forgetting the least recently failed key when full.
func (t *failureTable) add(key string, now time.Time) {
	f := t.prune(key, now)
	if f == nil {
		for t.len() >= t.capacity {
			oldest := t.order.Front()
			t.order.Remove(oldest)
			delete(t.entries, oldest.Value.(*failures).key)
		}
		f = &failures{key: key}
		t.entries[key] = t.order.PushBack(f)
	} else {
		t.order.MoveToBack(t.entries[key])
	}
	f.at = append(f.at, now)
	if len(f.at) > t.max {
		f.at = f.at[len(f.at)-t.max:]
	}
}

// remove takes back one failure of key recorded at exactly at, if it is still held.
func (t *failureTable) remove(key string, at time.Time) {
	el, ok := t.entries[key]
	if !ok {
		return
	}
	f := el.Value.(*failures)
	for i := len(f.at) - 1; i >= 0; i-- {
		if f.at[i].Equal(at) {
			f.at = append(f.at[:i], f.at[i+1:]...)
			break
		}
	}
	if len(f.at) == 0 {
		t.order.Remove(el)
		delete(t.entries, key)
	}
}

// clear forgets key.
func (t *failureTable) clear(key string) {
	if el, ok := t.entries[key]; ok {
		t.order.Remove(el)
		delete(t.entries, key)
	}
}
