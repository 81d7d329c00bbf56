package procmgr

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Feed is the status feed every backend embeds: it numbers the statuses the
// backend makes (Status.Seq), remembers the last status published for each
// instance, publishes a new one only when a field that matters changed
// (Changed), and fans the events out to subscribers without ever blocking
// the backend. A subscriber that falls behind loses its oldest events, and
// the first event after the gap is marked Lost. The zero value is ready to
// use.
type Feed struct {
	seq atomic.Uint64

	mu   sync.Mutex // orders publishing; the fan-out's lock is taken under it
	last map[InstanceID]Status
	fan  Fanout[Event]
}

// Stamp gives st the feed's next sequence number: of two statuses of one
// backend, the one stamped later was observed later.
func (f *Feed) Stamp(st Status) Status {
	st.Seq = f.seq.Add(1)
	return st
}

// Publish hands st to every subscriber, unless it is the same as the last
// status published for its instance (Changed says it is not) or was stamped
// before it (an action's read that a signal overtook). It reports whether st
// went out.
func (f *Feed) Publish(st Status) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if prev, ok := f.last[st.ID]; ok && (!Changed(prev, st) || (st.Seq != 0 && st.Seq < prev.Seq)) {
		return false
	}
	if f.last == nil {
		f.last = map[InstanceID]Status{}
	}
	f.last[st.ID] = st
	f.fan.PublishMarking(Event{Status: st, At: time.Now()}, markLost)
	return true
}

// Gone forgets id and publishes that it is absent (a status with no Seq).
func (f *Feed) Gone(id InstanceID, backend string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.last, id)
	f.fan.PublishMarking(Event{Status: Status{ID: id, State: StateAbsent, Backend: backend}, At: time.Now()}, markLost)
}

// Forget forgets id's last status without publishing anything, so that the
// next status of id goes out whatever it is.
func (f *Feed) Forget(id InstanceID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.last, id)
}

// Subscribe returns a channel of every instance's events until ctx ends or
// Close; it fails past MaxSubscribers (ErrTooManySubscribers) and after
// Close (ErrClosed).
func (f *Feed) Subscribe(ctx context.Context) (<-chan Event, error) { return f.fan.Join(ctx) }

// Close closes every subscriber's channel.
func (f *Feed) Close() { f.fan.Close() }

func markLost(ev Event) Event {
	ev.Lost = true
	return ev
}

// Changed reports whether b differs from a in anything a subscriber shows:
// every field but Since (it moves with State) and Seq.
func Changed(a, b Status) bool {
	return a.ID != b.ID || a.State != b.State || a.ActiveState != b.ActiveState || a.SubState != b.SubState ||
		a.MainPID != b.MainPID || a.Restarts != b.Restarts || !exitEqual(a.LastExit, b.LastExit) ||
		a.MemoryBytes != b.MemoryBytes || a.CPUUsage != b.CPUUsage || a.Tasks != b.Tasks ||
		a.Limits != b.Limits || a.Backend != b.Backend || !slices.Equal(a.Notes, b.Notes)
}

func exitEqual(a, b *ExitInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
