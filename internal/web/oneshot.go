package web

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/auth"
)

// oneShots keep a secret made by a form post (a new API token, a generated
// password) for the one page view the post redirects to: post, redirect,
// get. A reload of that page shows it no more, and a reload never posts the
// form again (which would make another token or reset the password again).
// The secret is bound to the user who made it and lives a few minutes at
// most, in memory only.
type oneShots struct {
	mu    sync.Mutex
	items map[string]oneShot
}

type oneShot struct {
	userID  uint
	user    string
	values  map[string]string
	expires time.Time
}

const (
	oneShotTTL = 5 * time.Minute
	maxShots   = 1024
)

// put keeps values for p and returns the key of the page that shows them.
func (o *oneShots) put(p auth.Principal, values map[string]string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	key := hex.EncodeToString(b[:])
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.items == nil {
		o.items = map[string]oneShot{}
	}
	for k, s := range o.items {
		if now.After(s.expires) || len(o.items) >= maxShots {
			delete(o.items, k)
		}
	}
	o.items[key] = oneShot{userID: p.UserID, user: p.Name, values: values, expires: now.Add(oneShotTTL)}
	return key
}

// take returns the values kept under key for p, once.
func (o *oneShots) take(p auth.Principal, key string) (map[string]string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.items[key]
	if !ok || s.userID != p.UserID || s.user != p.Name || time.Now().After(s.expires) {
		return nil, false
	}
	delete(o.items, key)
	return s.values, true
}
