package auth

import (
	"context"
	"fmt"
	"sync"
)

// Bounds of the revocation feed.
const (
	// RevocationBuffer is how many user ids one subscriber may have unread.
	RevocationBuffer = 256
	// MaxRevocationSubscribers is how many subscribers the feed serves at once.
	MaxRevocationSubscribers = 64
)

// revocationFeed fans user ids out to subscribers without ever blocking the publisher.
type revocationFeed struct {
	mu   sync.Mutex
	subs map[chan uint]struct{}
}

func newRevocationFeed() *revocationFeed {
	return &revocationFeed{subs: make(map[chan uint]struct{})}
}

// SubscribeRevocations returns a channel that receives the id of each user whose credentials
// ended or changed: a logout, a password change or reset, a role change, a user disabled, an
// API token revoked. Their sessions are gone (or their tokens refused) by the time the id
// arrives; a subscriber holding connections of that user (websockets) should check each again
// or close them.
//
// The channel holds up to RevocationBuffer unread ids. A subscriber that falls further behind
// is not waited for: its channel is closed, which tells it that it lost ids and must check
// every connection it holds (and subscribe again). The channel is also closed when ctx ends.
// At most MaxRevocationSubscribers may subscribe at once; past that the error wraps ErrLimit.
func (s *Service) SubscribeRevocations(ctx context.Context) (<-chan uint, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: subscribe to revocations: %w", err)
	}
	f := s.feed
	f.mu.Lock()
	if len(f.subs) >= MaxRevocationSubscribers {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w: %d revocation subscribers already", ErrLimit, MaxRevocationSubscribers)
	}
	ch := make(chan uint, RevocationBuffer)
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() { f.drop(ch) })
	return ch, nil
}

// drop ends a subscription unless the publisher already ended it.
func (f *revocationFeed) drop(ch chan uint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[ch]; ok {
		delete(f.subs, ch)
		close(ch)
	}
}

// publish sends userID to every subscriber, closing the channel of any whose buffer is full.
func (f *revocationFeed) publish(userID uint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- userID:
		default:
			delete(f.subs, ch)
			close(ch)
		}
	}
}
