package procmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// SubscriberBuffer is the number of events a subscriber may fall behind by
// before the oldest are dropped.
const SubscriberBuffer = 1024

// MaxSubscribers bounds the number of concurrent subscribers of a backend.
const MaxSubscribers = 256

// Errors of Join and of every Subscribe built on it.
var (
	// ErrTooManySubscribers: MaxSubscribers subscriptions are open.
	ErrTooManySubscribers = fmt.Errorf("procmgr: %d subscribers already: %w", MaxSubscribers, ErrConflict)
	// ErrClosed: the fan-out (the backend, the service) was closed.
	ErrClosed = errors.New("procmgr: closed")
)

// Fanout delivers values to every subscriber without ever blocking the
// producer: a subscriber whose buffer is full loses its oldest value. The
// zero value is ready to use.
type Fanout[T any] struct {
	mu     sync.Mutex
	subs   map[chan T]struct{}
	closed bool
}

// Join adds a subscriber until ctx ends; its channel is closed then, or at
// Close. Past MaxSubscribers it fails with ErrTooManySubscribers, and after
// Close with ErrClosed.
func (f *Fanout[T]) Join(ctx context.Context) (<-chan T, error) {
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[chan T]struct{}{}
	}
	switch {
	case f.closed:
		f.mu.Unlock()
		return nil, ErrClosed
	case len(f.subs) >= MaxSubscribers:
		f.mu.Unlock()
		return nil, ErrTooManySubscribers
	}
	ch := make(chan T, SubscriberBuffer)
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[ch]; ok {
			delete(f.subs, ch)
			close(ch)
		}
	}()
	return ch, nil
}

// Publish hands v to every subscriber.
func (f *Fanout[T]) Publish(v T) { f.PublishMarking(v, nil) }

// PublishMarking hands v to every subscriber. A subscriber that had to lose
// its oldest value to make room gets lost(v) instead of v, when lost is set:
// a mark that something before it is missing, delivered after the gap, so
// the subscriber knows to read the whole state again.
func (f *Fanout[T]) PublishMarking(v T, lost func(T) T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		w := v
		for {
			select {
			case ch <- w:
			default:
				// Full: drop the oldest and try again. Only publish sends,
				// under f.mu, so the retry terminates.
				select {
				case <-ch:
				default:
				}
				if lost != nil {
					w = lost(v)
				}
				continue
			}
			break
		}
	}
}

// Close closes every subscriber's channel; later subscriptions fail.
func (f *Fanout[T]) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}
