package live

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/coalesce"
)

// Per-socket bounds beside Options.QueueLines.
const (
	// maxBatchLines and maxBatchBytes bound one logs message.
	maxBatchLines = 200
	maxBatchBytes = 256 << 10
	// maxNotes bounds pending skipped markers; maxSamples pending usage
	// samples (one comes every 5 s, so only a stalled socket fills it).
	maxNotes   = 16
	maxSamples = 32
	// closeWait is how long a closing socket waits for the browser's
	// answering close frame before it cuts the connection.
	closeWait = time.Second
)

// closeFrame is how a socket is to end: with code and reason, after
// sending what is pending (drain) or at once.
type closeFrame struct {
	code   int
	reason string
	drain  bool
}

// client is one socket. The hub and the log follows hand it work through
// offer and push methods that never block: pending rows are coalesced per
// instance (newest wins), log lines wait in a bounded queue that drops its
// oldest, and a 1-slot channel wakes the writer.
type client struct {
	h        *Hub
	viewer   Viewer
	instance string // "" for a dashboard socket
	wake     chan struct{}

	// first is written before anything else (the snapshot, then on an
	// instance socket the usage history); set before the writer starts.
	first [][]byte
	// attachLogs: Serve attached the socket to a follow.
	attachLogs bool
	// follow is the log follow the socket reads; guarded by logs.mu.
	follow *follow

	mu      sync.Mutex
	conn    *websocket.Conn
	aborted bool
	rows    coalesce.Queue[string, []byte]
	notes   [][]byte
	samples [][]byte
	lines   []*logLine
	spare   []*logLine
	dropped int    // lines dropped from the queue since the writer last took it
	epoch   string // the follow epoch the queued lines belong to
	closing *closeFrame
}

func newClient(h *Hub, v Viewer, instance string) *client {
	return &client{h: h, viewer: v, instance: instance, wake: make(chan struct{}, 1)}
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// offerRow leaves a row (or gone) message for instance id, replacing one
// still pending for it.
func (c *client) offerRow(id string, msg []byte) {
	c.mu.Lock()
	c.rows.Put(id, msg)
	c.mu.Unlock()
	c.signal()
}

func (c *client) offerSample(msg []byte) {
	c.mu.Lock()
	c.samples = appendBounded(c.samples, msg, maxSamples)
	c.mu.Unlock()
	c.signal()
}

func (c *client) note(msg []byte) {
	c.mu.Lock()
	c.notes = appendBounded(c.notes, msg, maxNotes)
	c.mu.Unlock()
	c.signal()
}

func appendBounded(q [][]byte, msg []byte, limit int) [][]byte {
	if len(q) >= limit {
		copy(q, q[1:])
		q = q[:len(q)-1]
	}
	return append(q, msg)
}

// startLog sets what the socket's log begins with: on attaching, or when
// the follow restarted (a new epoch), which discards the old epoch's queued
// lines; the browser clears its log on the "log restarted" marker.
func (c *client) startLog(epoch string, marker []byte, lines []*logLine) {
	c.mu.Lock()
	clear(c.lines)
	c.lines = append(c.lines[:0], lines...)
	c.dropped = 0
	c.epoch = epoch
	if marker != nil {
		c.notes = appendBounded(c.notes, marker, maxNotes)
	}
	c.mu.Unlock()
	c.signal()
}

// pushLines queues new lines of the socket's follow, dropping the oldest
// beyond limit.
func (c *client) pushLines(lines []*logLine, limit int) {
	c.mu.Lock()
	c.lines = append(c.lines, lines...)
	if over := len(c.lines) - limit; over > 0 {
		clear(c.lines[:over])
		c.lines = c.lines[over:]
		c.dropped += over
	}
	c.mu.Unlock()
	c.signal()
}

// close asks the writer to end the socket with code; the first request
// wins, except that an immediate close overrides a draining one.
func (c *client) close(code int, reason string, drain bool) {
	c.mu.Lock()
	if c.closing == nil || (c.closing.drain && !drain) {
		c.closing = &closeFrame{code: code, reason: reason, drain: drain}
	}
	c.mu.Unlock()
	c.signal()
}

func (c *client) setConn(conn *websocket.Conn) {
	c.mu.Lock()
	c.conn = conn
	aborted := c.aborted
	c.mu.Unlock()
	if aborted {
		conn.Close()
	}
}

// abort cuts the connection, failing a write stuck on a peer that does not
// read.
func (c *client) abort() {
	c.mu.Lock()
	c.aborted = true
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// batch is what the writer takes from the socket in one go.
type batch struct {
	rows    [][]byte
	notes   [][]byte
	samples [][]byte
	lines   []*logLine
	dropped int
	epoch   string
	close   *closeFrame
}

func (b *batch) empty() bool {
	return len(b.rows) == 0 && len(b.notes) == 0 && len(b.samples) == 0 && len(b.lines) == 0 && b.dropped == 0
}

func (c *client) take() batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := batch{close: c.closing}
	if c.closing != nil && !c.closing.drain {
		return b
	}
	b.rows = c.rows.Drain(nil)
	b.notes, c.notes = c.notes, nil
	b.samples, c.samples = c.samples, nil
	b.lines, c.lines = c.lines, c.spare[:0]
	c.spare = nil
	b.dropped, c.dropped = c.dropped, 0
	b.epoch = c.epoch
	return b
}

// giveBack returns the lines slice of a written batch for reuse.
func (c *client) giveBack(lines []*logLine) {
	clear(lines)
	c.mu.Lock()
	if c.spare == nil && cap(lines) <= 2*c.h.opt.QueueLines {
		c.spare = lines[:0]
	}
	c.mu.Unlock()
}

// readLoop reads the socket only for its control frames: a pong extends the
// read deadline; a data frame is ignored (actions never travel on the
// socket) unless it breaks the read limit, which ends the socket.
func (c *client) readLoop(done chan<- struct{}) {
	defer close(done)
	conn, wait := c.conn, c.h.opt.PongWait
	conn.SetReadLimit(c.h.opt.ReadLimit)
	conn.SetReadDeadline(time.Now().Add(wait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(wait)) })
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

// writeLoop writes everything the socket is handed, pings every PingPeriod
// and re-checks the session then. It returns why the socket ended.
func (c *client) writeLoop(readDone <-chan struct{}) string {
	ping := time.NewTicker(c.h.opt.PingPeriod)
	defer ping.Stop()
	c.mu.Lock()
	f := c.closing
	c.mu.Unlock()
	if f != nil && !f.drain {
		// Ended before it began (a session closed meanwhile, or the
		// hub stopping): not even the snapshot.
		c.writeClose(f, readDone)
		return "closed: " + f.reason
	}
	for _, m := range c.first {
		if err := c.write(m); err != nil {
			return "write: " + err.Error()
		}
	}
	c.first = nil
	for {
		b := c.take()
		if !b.empty() {
			if err := c.writeBatch(b); err != nil {
				return "write: " + err.Error()
			}
		}
		if b.close != nil {
			c.writeClose(b.close, readDone)
			return "closed: " + b.close.reason
		}
		if !b.empty() {
			// More may have come while writing; a busy socket still
			// pings and re-checks its session.
			select {
			case <-ping.C:
				if why := c.tick(); why != "" {
					return why
				}
			default:
			}
			continue
		}
		select {
		case <-c.wake:
		case <-readDone:
			return "peer went away"
		case <-ping.C:
			if why := c.tick(); why != "" {
				return why
			}
		}
	}
}

// tick sends a ping and re-checks the session; a session no longer valid
// is asked to close (the loop writes the close frame).
func (c *client) tick() string {
	opt := &c.h.opt
	if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(opt.WriteWait)); err != nil {
		return "ping: " + err.Error()
	}
	if opt.StillValid != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opt.WriteWait)
		ok := opt.StillValid(ctx, c.viewer)
		cancel()
		if !ok {
			c.close(CloseSessionEnded, "session ended", false)
		}
	}
	return ""
}

func (c *client) write(msg []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(c.h.opt.WriteWait))
	return c.conn.WriteMessage(websocket.TextMessage, msg)
}

func (c *client) writeBatch(b batch) error {
	for _, group := range [][][]byte{b.rows, b.notes, b.samples} {
		for _, m := range group {
			if err := c.write(m); err != nil {
				return err
			}
		}
	}
	if b.dropped > 0 {
		// The dropped lines were older than those still queued, so the
		// marker goes before them.
		if err := c.write(skipped(c.instance, b.dropped, reasonSlow)); err != nil {
			return err
		}
	}
	if len(b.lines) > 0 {
		if err := c.writeLines(b.epoch, b.lines); err != nil {
			return err
		}
		c.giveBack(b.lines)
	}
	return nil
}

// writeLines writes lines as logs messages of at most maxBatchLines lines
// and about maxBatchBytes each. Each line is encoded once by its follow; the
// message is assembled around the shared bytes.
func (c *client) writeLines(epoch string, lines []*logLine) error {
	id, _ := json.Marshal(c.instance)
	ep, _ := json.Marshal(epoch)
	for len(lines) > 0 {
		n, size := 0, 0
		for n < len(lines) && n < maxBatchLines && (n == 0 || size+len(lines[n].raw) <= maxBatchBytes) {
			size += len(lines[n].raw) + 1
			n++
		}
		c.conn.SetWriteDeadline(time.Now().Add(c.h.opt.WriteWait))
		w, err := c.conn.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		w.Write([]byte(`{"type":"logs","id":`))
		w.Write(id)
		w.Write([]byte(`,"epoch":`))
		w.Write(ep)
		w.Write([]byte(`,"lines":[`))
		for i, l := range lines[:n] {
			if i > 0 {
				w.Write([]byte{','})
			}
			w.Write(l.raw)
		}
		w.Write([]byte(`]}`))
		// Close flushes the frame and reports any error of the writes.
		if err := w.Close(); err != nil {
			return err
		}
		lines = lines[n:]
	}
	return nil
}

// writeClose sends the close frame and waits briefly for the browser's
// answer (the reader ends on it) before the connection is cut.
func (c *client) writeClose(f *closeFrame, readDone <-chan struct{}) {
	msg := websocket.FormatCloseMessage(f.code, f.reason)
	if err := c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(c.h.opt.WriteWait)); err != nil {
		return
	}
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-readDone:
	case <-t.C:
	}
}
