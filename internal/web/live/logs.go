package live

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// How a follow batches lines for its sockets: a batch goes out flushEvery
// after its first line, or as soon as it holds maxBatchLines.
const flushEvery = 50 * time.Millisecond

// A follow whose stream ended by itself is reopened after a backoff.
const (
	reopenFirst = time.Second
	reopenMax   = 30 * time.Second
)

// logLine is one numbered line, encoded once as its JSON object and shared
// by the backlog and every socket's queue.
type logLine struct {
	seq uint64
	raw []byte
}

// wireLine is a line as the protocol spells it.
type wireLine struct {
	Seq  uint64 `json:"seq"`
	At   string `json:"at"`
	Text string `json:"text"`
}

func encodeLine(seq uint64, l procmgr.LogLine) *logLine {
	// Valid UTF-8 first, then the length bound, so that the text the
	// browser decodes is never longer than MaxLogLineLen.
	text := procmgr.BoundLine(strings.ToValidUTF8(l.Text, "\uFFFD"))
	// No HTML escaping: the browser puts the text in textContent, and
	// escaping would grow a line of '<' six-fold in every queue and backlog.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wireLine{Seq: seq, At: l.At.UTC().Format(time.RFC3339Nano), Text: text}); err != nil {
		panic("live: encode log line: " + err.Error()) // strings and an integer always encode
	}
	return &logLine{seq: seq, raw: bytes.TrimSuffix(buf.Bytes(), []byte("\n"))}
}

// logs holds one follow per watched instance, shared by all its sockets.
type logs struct {
	src Source
	opt *Options

	mu      sync.Mutex
	ctx     context.Context // the hub's; nil before Run and after stop
	follows map[string]*follow
	wg      sync.WaitGroup
}

func newLogs(src Source, opt *Options) *logs {
	return &logs{src: src, opt: opt, follows: map[string]*follow{}}
}

// follow is one stream of an instance's log: numbered lines (seq 1, 2, ...
// within an epoch, a random id of the stream), the last LogBacklog of them
// for sockets that resume, and the sockets reading it.
type follow struct {
	id     string
	cancel context.CancelFunc
	linger *time.Timer // set while no socket reads it; guarded by logs.mu

	mu      sync.Mutex
	epoch   string
	ring    []*logLine // the backlog, circular
	head    int        // index of the oldest line in ring
	n       int        // lines in ring
	clients map[*client]struct{}
}

func newEpoch() string { return rand.Text()[:16] }

func (l *logs) start(ctx context.Context) {
	l.mu.Lock()
	l.ctx = ctx
	l.mu.Unlock()
}

// stop ends every follow and waits for their goroutines.
func (l *logs) stop() {
	l.mu.Lock()
	l.ctx = nil
	for id, f := range l.follows {
		l.endLocked(id, f)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *logs) endLocked(id string, f *follow) {
	delete(l.follows, id)
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	f.cancel()
}

// attach makes c read id's follow, opening it if needed, and queues what c
// gets first: the lines after resume when it can resume, else the last
// InitialLines lines (after a "log restarted" marker when c read another
// epoch before). Both happen under the follow's lock, so no line is sent
// twice or lost between the backlog and the live lines.
func (l *logs) attach(c *client, id string, r Resume) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil {
		return
	}
	f := l.follows[id]
	if f == nil {
		if len(l.follows) >= l.opt.MaxFollows && !l.evictIdleLocked() {
			c.note(skipped(id, 0, reasonTooMany))
			return
		}
		f = l.openLocked(id)
	}
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	f.mu.Lock()
	f.clients[c] = struct{}{}
	epoch, marker, lines := f.resumeLocked(id, r, l.opt.InitialLines)
	c.startLog(epoch, marker, lines)
	f.mu.Unlock()
	c.follow = f
}

// resumeLocked picks the lines a socket attaching with r gets.
func (f *follow) resumeLocked(id string, r Resume, initial int) (epoch string, marker []byte, lines []*logLine) {
	first, last := uint64(0), uint64(0)
	if f.n > 0 {
		first, last = f.at(0).seq, f.at(f.n-1).seq
	}
	switch {
	case r.Epoch == f.epoch && r.After <= last && (r.After+1 >= first || f.n == 0):
		// Resume: exactly the lines after r.After.
		skip := 0
		if f.n > 0 {
			skip = int(r.After + 1 - first)
		}
		return f.epoch, nil, f.lastLocked(f.n - skip)
	case r.Epoch == f.epoch && r.After <= last:
		// The lines after r.After are partly gone from the backlog.
		lines = f.lastLocked(initial)
		return f.epoch, skipped(id, int(lines[0].seq-r.After-1), reasonMissed), lines
	case r.Epoch != "":
		// Another stream (or a seq this one never had): start over.
		marker = skipped(id, 0, reasonRestarted)
	}
	return f.epoch, marker, f.lastLocked(initial)
}

func (f *follow) at(i int) *logLine { return f.ring[(f.head+i)%len(f.ring)] }

// lastLocked copies the last n lines of the backlog, oldest first.
func (f *follow) lastLocked(n int) []*logLine {
	n = min(n, f.n)
	out := make([]*logLine, n)
	for i := range n {
		out[i] = f.at(f.n - n + i)
	}
	return out
}

// evictIdleLocked ends one follow that only lingers, to make room.
func (l *logs) evictIdleLocked() bool {
	for id, f := range l.follows {
		if f.linger != nil {
			l.endLocked(id, f)
			return true
		}
	}
	return false
}

func (l *logs) openLocked(id string) *follow {
	ctx, cancel := context.WithCancel(l.ctx)
	f := &follow{
		id:      id,
		cancel:  cancel,
		epoch:   newEpoch(),
		ring:    make([]*logLine, l.opt.LogBacklog),
		clients: map[*client]struct{}{},
	}
	l.follows[id] = f
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run(ctx, f)
	}()
	return f
}

// detach stops c reading its follow; the follow lingers FollowLinger after
// its last socket, so that a reconnect resumes.
func (l *logs) detach(c *client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := c.follow
	if f == nil {
		return
	}
	c.follow = nil
	f.mu.Lock()
	delete(f.clients, c)
	idle := len(f.clients) == 0
	f.mu.Unlock()
	if idle && l.follows[f.id] == f && f.linger == nil {
		f.linger = time.AfterFunc(l.opt.FollowLinger, func() { l.expire(f) })
	}
}

func (l *logs) expire(f *follow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.follows[f.id] != f || f.linger == nil {
		return // reattached, dropped, or evicted meanwhile
	}
	f.mu.Lock()
	idle := len(f.clients) == 0
	f.mu.Unlock()
	if idle {
		l.endLocked(f.id, f)
	}
}

// drop ends id's follow at once: the instance is gone.
func (l *logs) drop(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.follows[id]; f != nil {
		l.endLocked(id, f)
	}
}

// unavailable tells a follow's sockets that its stream cannot be opened
// now (an instance still provisioning, a journal reader cap reached); the
// follow keeps trying while anyone reads it.
func (f *follow) unavailable() {
	msg := skipped(f.id, 0, reasonUnavailable)
	f.mu.Lock()
	for c := range f.clients {
		c.note(msg)
	}
	f.mu.Unlock()
}

// run reads the follow's stream until ctx ends, reopening it (as a new
// epoch) when it ends by itself, and retrying with backoff while it cannot
// be opened: a page opened during provisioning gets the log once the
// instance runs. The follow (and so this loop) ends when its last socket
// has lingered away or the instance is gone.
func (l *logs) run(ctx context.Context, f *follow) {
	backoff := reopenFirst
	told := false
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, reopenMax)
		return true
	}
	for {
		ch, err := l.src.FollowLogs(ctx, l.opt.System, f.id, l.opt.InitialLines)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.opt.Log.Debug("live: follow logs; retrying", "instance", f.id, "err", err, "after", backoff)
			if !told {
				f.unavailable()
				told = true
			}
			if !wait() {
				return
			}
			continue
		}
		told = false
		if f.pump(ctx, ch, l.opt.QueueLines) {
			backoff = reopenFirst
		}
		if ctx.Err() != nil {
			return
		}
		l.opt.Log.Debug("live: log stream ended; reopening", "instance", f.id, "after", backoff)
		if !wait() {
			return
		}
		f.restart(newEpoch())
	}
}

// restart begins a new epoch: the backlog is emptied and every socket told.
func (f *follow) restart(epoch string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch = epoch
	clear(f.ring)
	f.head, f.n = 0, 0
	marker := skipped(f.id, 0, reasonRestarted)
	for c := range f.clients {
		c.startLog(epoch, marker, nil)
	}
}

// pump numbers and batches the lines of ch until it closes or ctx ends; it
// reports whether any line came.
func (f *follow) pump(ctx context.Context, ch <-chan procmgr.LogLine, queue int) bool {
	var (
		seq     uint64
		pending []*logLine
		armed   bool
		got     bool
	)
	t := time.NewTimer(flushEvery)
	t.Stop()
	defer t.Stop()
	flush := func() {
		if len(pending) > 0 {
			f.flush(pending, queue)
			clear(pending)
			pending = pending[:0]
		}
		if armed {
			t.Stop()
			armed = false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return got
		case line, ok := <-ch:
			if !ok {
				flush()
				return got
			}
			got = true
			seq++
			pending = append(pending, encodeLine(seq, line))
			if len(pending) >= maxBatchLines {
				flush()
			} else if !armed {
				t.Reset(flushEvery)
				armed = true
			}
		case <-t.C:
			armed = false
			flush()
		}
	}
}

// flush adds lines to the backlog and hands them to every socket, in one
// step under the follow's lock (see attach).
func (f *follow) flush(lines []*logLine, queue int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ln := range lines {
		if f.n < len(f.ring) {
			f.ring[(f.head+f.n)%len(f.ring)] = ln
			f.n++
		} else {
			f.ring[f.head] = ln
			f.head = (f.head + 1) % len(f.ring)
		}
	}
	for c := range f.clients {
		c.pushLines(lines, queue)
	}
}
