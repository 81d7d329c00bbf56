// Package coalesce holds the one structure the panel uses wherever events
// about the same thing are merged instead of queued: a first-in first-out
// queue with at most one entry per key, whose value the newest event sets.
// It never drops a key, so its size is bounded by the number of keys (one
// per instance), not by how many events arrive.
package coalesce

import "sync"

// Queue is a FIFO of keys, each present at most once, each with the value
// last put for it. Putting a key already queued replaces its value and
// keeps its place. The zero Queue is empty and ready; it is not safe for
// concurrent use (see Set for a concurrent one).
type Queue[K comparable, V any] struct {
	vals  map[K]V
	order []K
	head  int // order[:head] are taken
}

// Put queues k with v, or replaces the value of k if it is queued. It
// reports whether k was newly queued.
func (q *Queue[K, V]) Put(k K, v V) bool {
	if q.vals == nil {
		q.vals = map[K]V{}
	}
	_, had := q.vals[k]
	q.vals[k] = v
	if !had {
		q.order = append(q.order, k)
	}
	return !had
}

// Len is the number of queued keys.
func (q *Queue[K, V]) Len() int { return len(q.vals) }

// Pop takes the oldest key and its newest value; ok is false when empty.
func (q *Queue[K, V]) Pop() (k K, v V, ok bool) {
	if q.head == len(q.order) {
		return k, v, false
	}
	k = q.order[q.head]
	var zero K
	q.order[q.head] = zero
	q.head++
	v = q.vals[k]
	delete(q.vals, k)
	// Reuse the slice once the taken part is most of it, so a queue that
	// is fed forever does not grow forever.
	if q.head == len(q.order) {
		q.order, q.head = q.order[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.order) {
		n := copy(q.order, q.order[q.head:])
		clear(q.order[n:])
		q.order, q.head = q.order[:n], 0
	}
	return k, v, true
}

// Drain takes every queued value, oldest key first, appending to dst.
func (q *Queue[K, V]) Drain(dst []V) []V {
	for _, k := range q.order[q.head:] {
		dst = append(dst, q.vals[k])
	}
	clear(q.vals)
	clear(q.order)
	q.order, q.head = q.order[:0], 0
	return dst
}

// Set is a concurrent de-duplicated FIFO of keys that need work: Add marks
// a key, Ready wakes the one worker, Take hands keys out oldest first. A
// key added again while queued keeps its place; one added while its work
// runs is queued anew, so the worker looks once more.
type Set[K comparable] struct {
	mu    sync.Mutex
	q     Queue[K, struct{}]
	ready chan struct{}
	once  sync.Once
}

func (s *Set[K]) init() { s.once.Do(func() { s.ready = make(chan struct{}, 1) }) }

// Add marks k; it reports whether k was not marked already.
func (s *Set[K]) Add(k K) bool {
	s.init()
	s.mu.Lock()
	added := s.q.Put(k, struct{}{})
	s.mu.Unlock()
	s.Wake()
	return added
}

// Wake makes Ready receive, so that another worker looks for keys.
func (s *Set[K]) Wake() {
	s.init()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready receives when keys may be waiting; after it fires, Take until it
// reports none.
func (s *Set[K]) Ready() <-chan struct{} {
	s.init()
	return s.ready
}

// Take removes and returns the oldest marked key.
func (s *Set[K]) Take() (K, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, _, ok := s.q.Pop()
	return k, ok
}

// Len is the number of marked keys.
func (s *Set[K]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.Len()
}
