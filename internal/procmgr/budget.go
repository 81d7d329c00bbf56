package procmgr

import (
	"fmt"
	"sync"
)

// Budget is a count of bytes that holders reserve before they keep them and
// release when they let them go: one bound for what the daemon keeps in
// memory of a kind, however many instances, followers and readers share it.
type Budget struct {
	mu    sync.Mutex
	limit int64
	used  int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Reserve takes n bytes, or reports false when fewer are left.
func (b *Budget) Reserve(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// Release gives back n bytes taken with Reserve.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used = max(0, b.used-n)
}

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Limit returns the budget's size.
func (b *Budget) Limit() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limit
}

// SetLimit changes the budget's size; what is reserved stays reserved.
func (b *Budget) SetLimit(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limit = n
}

// DefaultLogMemory is LogMemory's size unless the daemon is told otherwise.
const DefaultLogMemory = 64 << 20

// LogMemory bounds the log lines the daemon keeps in memory across every
// instance: the supervisor's per-instance rings, and the lines a journal
// read gathers before it hands them over. When it is spent, rings give up
// their own oldest lines (the log files keep everything) and a read that
// would need more fails with ErrLogMemory.
var LogMemory = NewBudget(DefaultLogMemory)

// ErrLogMemory: LogMemory has no room for a read.
var ErrLogMemory = fmt.Errorf("procmgr: the daemon's log memory budget is spent; ask for fewer lines or try again later: %w", ErrConflict)

// ParseLogMemory reads a --log-memory value: 16M to 64G.
func ParseLogMemory(s string) (Bytes, error) {
	return parseBytes("log-memory", s, 16<<20, 64<<30)
}

// LineCost is what a log line held in memory counts against LogMemory: its
// text and the bookkeeping around it.
func LineCost(l LogLine) int64 { return int64(len(l.Text)) + 64 }
