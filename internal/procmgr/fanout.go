package procmgr

import (
	"context"
	"sync"
)

// SubscriberBuffer is the number of events a subscriber may fall behind by
// before the oldest are dropped.
const SubscriberBuffer = 1024

// MaxSubscribers bounds the number of concurrent subscribers of a backend.
const MaxSubscribers = 256

// Fanout delivers values to every subscriber without ever blocking the
// producer: a subscriber whose buffer is full loses its oldest event.
type Fanout[T any] struct {
	mu     sync.Mutex
	subs   map[chan T]struct{}
	closed bool
}

// Subscribe adds a subscriber until ctx ends. Past MaxSubscribers, or after
// Close, the returned channel is already closed.
func (f *Fanout[T]) Subscribe(ctx context.Context) <-chan T {
	ch := make(chan T, SubscriberBuffer)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[chan T]struct{}{}
	}
	if f.closed || len(f.subs) >= MaxSubscribers {
		f.mu.Unlock()
		close(ch)
		return ch
	}
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
	return ch
}

// Publish hands ev to every subscriber.
func (f *Fanout[T]) Publish(ev T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		for {
			select {
			case ch <- ev:
			default:
				// Full: drop the oldest and try again. Only Publish sends,
				// under f.mu, so the retry terminates.
				select {
				case <-ch:
				default:
				}
				continue
			}
			break
		}
	}
}

// Close closes every subscriber's channel.
func (f *Fanout[T]) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}
