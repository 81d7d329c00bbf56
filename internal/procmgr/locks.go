package procmgr

import (
	"context"
	"fmt"
	"sync"
)

// Locks serialises actions per instance: one power or provisioning action at
// a time for each id, while actions on other instances go on in parallel.
// Kill never takes it.
type Locks struct {
	mu    sync.Mutex
	locks map[InstanceID]*idLock
}

type idLock struct {
	ch   chan struct{} // capacity 1: holding the token is holding the lock
	refs int
}

// ref returns id's lock, counted so that it is forgotten when unused.
func (l *Locks) ref(id InstanceID) *idLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks == nil {
		l.locks = map[InstanceID]*idLock{}
	}
	lk := l.locks[id]
	if lk == nil {
		lk = &idLock{ch: make(chan struct{}, 1)}
		l.locks[id] = lk
	}
	lk.refs++
	return lk
}

// Lock waits for id's lock or for ctx to end; the returned func releases it.
func (l *Locks) Lock(ctx context.Context, id InstanceID) (func(), error) {
	lk := l.ref(id)
	select {
	case lk.ch <- struct{}{}:
		return func() { <-lk.ch; l.release(id, lk) }, nil
	case <-ctx.Done():
		l.release(id, lk)
		return nil, ctx.Err()
	}
}

// TryLock takes id's lock only if it is free at once.
func (l *Locks) TryLock(id InstanceID) (func(), bool) {
	lk := l.ref(id)
	select {
	case lk.ch <- struct{}{}:
		return func() { <-lk.ch; l.release(id, lk) }, true
	default:
		l.release(id, lk)
		return nil, false
	}
}

func (l *Locks) release(id InstanceID, lk *idLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lk.refs--
	if lk.refs == 0 {
		delete(l.locks, id)
	}
}

// Power runs act, one action on a provisioned instance, while holding id's
// lock in locks: the shape of every backend's Start, Stop, Restart, Reload
// and SetLimits. An instance without a config (h.Provisioned) fails with
// ErrNotFound before any wait; act returns the status after the action.
func Power(ctx context.Context, h *Host, locks *Locks, id InstanceID, act func() (Status, error)) (Status, error) {
	if err := h.Provisioned(id); err != nil {
		return Status{}, err
	}
	unlock, err := locks.Lock(ctx, id)
	if err != nil {
		return Status{}, fmt.Errorf("procmgr: %s: waiting for the action in flight: %w", id, err)
	}
	defer unlock()
	return act()
}
