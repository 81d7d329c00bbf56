package live

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ikabud/panel/internal/procmgr"
)

func seqs(lines []wireLine) []uint64 {
	out := make([]uint64, len(lines))
	for i, l := range lines {
		out[i] = l.Seq
	}
	return out
}

func wantSeqs(t *testing.T, got []wireLine, from, to uint64) {
	t.Helper()
	if len(got) != int(to-from+1) {
		t.Fatalf("got seqs %v, want %d..%d", seqs(got), from, to)
	}
	for i, l := range got {
		if l.Seq != from+uint64(i) || l.Text != fmt.Sprintf("line %d", l.Seq) {
			t.Fatalf("got seqs %v (line %d text %q), want %d..%d", seqs(got), i, l.Text, from, to)
		}
	}
}

func emitRange(src *fakeSource, id string, from, to int) {
	for i := from; i <= to; i++ {
		src.emit(id, fmt.Sprintf("line %d", i))
	}
}

func logEnv(t *testing.T, opt Options) (*env, *fakeSource) {
	src := newFakeSource()
	src.set(view("a1", uidp(testPrincipals["alice"].UserID), procmgr.StateRunning, 10))
	src.set(view("a2", uidp(testPrincipals["alice"].UserID), procmgr.StateRunning, 11))
	return newEnv(t, src, opt), src
}

// openPage opens an instance socket and reads its snapshot and usage
// history.
func openPage(t *testing.T, e *env, query string) *wsClient {
	t.Helper()
	c := e.dial(query)
	if m := c.next(wait); m.Type != "snapshot" || len(m.Rows) != 1 {
		t.Fatalf("snapshot: %s", m.raw)
	}
	if m := c.next(wait); m.Type != "usage" {
		t.Fatalf("want usage history second, got %s", m.raw)
	}
	return c
}

// A reconnect with the epoch and last seq gets exactly the lines after it,
// from the lingering follow, with no duplicate and no gap.
func TestLogResumeNoDuplicatesNoGaps(t *testing.T) {
	e, src := logEnv(t, Options{})
	c := openPage(t, e, "who=alice&instance=a1")
	emitRange(src, "a1", 1, 10)
	lines, marks := c.linesUntil(10, wait)
	wantSeqs(t, lines, 1, 10)
	if len(marks) != 0 {
		t.Fatalf("markers on a fresh page: %+v", marks)
	}
	epoch := c.epoch
	c.conn.Close()

	emitRange(src, "a1", 11, 15) // while the page is away
	c = openPage(t, e, fmt.Sprintf("who=alice&instance=a1&epoch=%s&after=10", epoch))
	emitRange(src, "a1", 16, 20)
	lines, marks = c.linesUntil(20, wait)
	wantSeqs(t, lines, 11, 20)
	if len(marks) != 0 {
		t.Fatalf("markers on a resume: %+v", marks)
	}
	if n := src.followCalls("a1"); n != 1 {
		t.Fatalf("FollowLogs called %d times, want 1 (the follow lingers)", n)
	}
}

// A resume from another epoch gets a "log restarted" marker and the last
// lines; one from too far back gets a marker counting what it missed; a
// stream that ends is reopened as a new epoch, announced.
func TestLogEpochChange(t *testing.T) {
	e, src := logEnv(t, Options{InitialLines: 5, LogBacklog: 8})
	emitRange(src, "a1", 1, 12) // history before any follow
	c := openPage(t, e, "who=alice&instance=a1&epoch=OLDEPOCH&after=3")
	if m := c.next(wait); m.Type != "skipped" || m.Reason != "log restarted" || m.Count != 0 {
		t.Fatalf("want the restarted marker first, got %s", m.raw)
	}
	// The backend replays its last InitialLines lines (8..12) as seq 1..5.
	lines, _ := c.linesUntil(5, wait)
	if len(lines) != 5 || lines[0].Text != "line 8" || lines[4].Text != "line 12" {
		t.Fatalf("initial lines: %+v", lines)
	}
	epoch := c.epoch

	// Too far back: the backlog (8 lines) holds seq 8..15 once 15 came.
	emitRange(src, "a1", 13, 22) // seq 6..15
	c.linesUntil(15, wait)
	d := openPage(t, e, fmt.Sprintf("who=alice&instance=a1&epoch=%s&after=2", epoch))
	m := d.next(wait)
	// The last 5 lines are seq 11..15: 3..10 were missed.
	if m.Type != "skipped" || m.Count != 8 || m.Reason != "missed while disconnected" {
		t.Fatalf("want a marker for 8 missed lines, got %s", m.raw)
	}
	lines, _ = d.linesUntil(15, wait)
	if s := seqs(lines); len(s) != 5 || s[0] != 11 {
		t.Fatalf("after the marker: seqs %v, want 11..15", s)
	}

	// The stream ends: the follow reopens as a new epoch.
	src.endStream("a1")
	for _, p := range []*wsClient{c, d} {
		if m := p.nextOf("skipped", 3*wait); m.Reason != "log restarted" {
			t.Fatalf("after the stream ended: %s", m.raw)
		}
	}
	if !eventually(3*wait, func() bool { return src.followCalls("a1") == 2 }) {
		t.Fatal("the ended stream was not reopened")
	}
	src.emit("a1", "after restart")
	for _, p := range []*wsClient{c, d} {
		m := p.nextOf("logs", wait)
		last := m.Lines[len(m.Lines)-1]
		if m.Epoch == epoch || last.Text != "after restart" || last.Seq != uint64(len(m.Lines)) {
			t.Fatalf("after the restart: %s", m.raw)
		}
	}
}

// One follow serves every socket of an instance.
func TestFollowShared(t *testing.T) {
	e, src := logEnv(t, Options{})
	var socks []*wsClient
	for _, who := range []string{"admin", "admin2", "support", "alice"} {
		socks = append(socks, openPage(t, e, "who="+who+"&instance=a1"))
	}
	emitRange(src, "a1", 1, 5)
	for _, c := range socks {
		lines, _ := c.linesUntil(5, wait)
		wantSeqs(t, lines, 1, 5)
	}
	if n := src.followCalls("a1"); n != 1 {
		t.Fatalf("FollowLogs called %d times for 4 sockets", n)
	}
}

// A follow outlives its last socket by FollowLinger, then is cancelled.
func TestFollowLingerThenCancel(t *testing.T) {
	const linger = 150 * time.Millisecond
	e, src := logEnv(t, Options{FollowLinger: linger})
	a, b := openPage(t, e, "who=admin&instance=a1"), openPage(t, e, "who=alice&instance=a1")
	ff := src.lastFollow("a1")
	a.conn.Close()
	// Still followed for b.
	src.emit("a1", "line 1")
	if lines, _ := b.linesUntil(1, wait); len(lines) != 1 {
		t.Fatalf("lines: %+v", lines)
	}
	if ff.ctx.Err() != nil {
		t.Fatal("follow cancelled while a socket reads it")
	}
	b.conn.Close()
	left := time.Now()
	select {
	case <-ff.ctx.Done():
		if held := time.Since(left); held < linger {
			t.Fatalf("follow cancelled %v after its last socket, before the %v linger", held, linger)
		}
	case <-time.After(wait):
		t.Fatal("follow never cancelled")
	}
}

// Past MaxFollows a page gets a marker instead of lines; a lingering follow
// makes room.
func TestFollowCap(t *testing.T) {
	e, _ := logEnv(t, Options{MaxFollows: 1})
	a := openPage(t, e, "who=admin&instance=a1")
	b := openPage(t, e, "who=admin&instance=a2")
	if m := b.next(wait); m.Type != "skipped" || m.Reason != "too many logs open; try again later" {
		t.Fatalf("second follow: %s", m.raw)
	}
	a.conn.Close()
	if !eventually(wait, func() bool {
		c := openPage(t, e, "who=admin2&instance=a2")
		select {
		case m := <-c.msgs:
			if m.Type == "skipped" {
				c.conn.Close()
				return false
			}
		case <-time.After(100 * time.Millisecond):
		}
		return true
	}) {
		t.Fatal("a lingering follow did not make room")
	}
}

// Invalid UTF-8 arrives as valid JSON; a long line is cut.
func TestLogLineSanitised(t *testing.T) {
	e, src := logEnv(t, Options{})
	c := openPage(t, e, "who=admin&instance=a1")
	src.emit("a1", "bad \xff\xfe end")
	src.emit("a1", strings.Repeat("é", 5000))
	src.emit("a1", strings.Repeat("a\xff", 3000)) // longer once made valid
	var got []wireLine
	for len(got) < 3 {
		m := c.nextOf("logs", wait)
		if !utf8.Valid(m.raw) || !json.Valid(m.raw) {
			t.Fatalf("frame not valid UTF-8 JSON: %q", m.raw)
		}
		got = append(got, m.Lines...)
	}
	if got[0].Text != "bad \uFFFD end" {
		t.Errorf("invalid UTF-8 came as %q", got[0].Text)
	}
	for _, l := range got[1:] {
		if n := len(l.Text); n > procmgr.MaxLogLineLen || !strings.HasSuffix(l.Text, " [cut]") || !utf8.ValidString(l.Text) {
			t.Errorf("long line: %d bytes, ends %q", n, l.Text[max(0, n-10):])
		}
	}
}

// A client that stops reading slows nobody: another socket gets a row in
// the meantime, and when it reads again it finds a marker before its newer
// lines that counts exactly the lines it lost.
func TestSlowClientDropsOldestAndBlocksNobody(t *testing.T) {
	e, src := logEnv(t, Options{QueueLines: 250, WriteWait: time.Minute})
	slow, _, err := e.tryDial("who=admin&instance=a1", smallRecvBuf)
	if err != nil {
		t.Fatal(err)
	}
	dash := e.dial("who=admin")
	dash.nextOf("snapshot", wait)

	const total = 3000
	line := strings.Repeat("x", 4000)
	// Wait until the hub's follow reads a1 (the slow page attached).
	if !eventually(wait, func() bool { return src.followCalls("a1") == 1 }) {
		t.Fatal("no follow")
	}
	for i := 1; i <= total; i++ {
		src.emit("a1", fmt.Sprintf("%d %s", i, line))
	}
	// Wait until the stalled socket's writer is stuck: every line reached
	// the follow and the socket's queue still overflows.
	if !eventually(wait, func() bool { return e.hub.logs.stalled("a1", total) }) {
		t.Fatal("the socket that does not read never stalled")
	}
	// Two changes of the stalled page's own instance: the hub hands both
	// to the stalled socket too (the second replaces the first).
	for _, n := range []int{8, 9} {
		v := src.get("a1")
		v.Status.Restarts = n
		src.set(v)
	}
	// And a change the hub fans out after them.
	v := src.get("a2")
	v.Status.Restarts = 1
	src.set(v)
	got := make(chan struct{})
	go func() {
		for m := range dash.msgs {
			if m.Type == "row" && m.Row.ID == "a2" && m.Row.Restarts == 1 {
				close(got)
				return
			}
		}
	}()
	select {
	case <-got:
	case <-time.After(wait):
		t.Fatal("a stalled socket held up another socket's row")
	}

	slow.start()
	var prev uint64
	var pendingSkip, skippedTotal, received int
	var rows []int
	for prev != total {
		m := slow.next(wait)
		switch m.Type {
		case "row":
			rows = append(rows, m.Row.Restarts)
		case "skipped":
			if m.Reason != "slow connection" {
				t.Fatalf("marker %s", m.raw)
			}
			pendingSkip += m.Count
			skippedTotal += m.Count
		case "logs":
			for _, l := range m.Lines {
				if gap := int(l.Seq - prev - 1); gap != pendingSkip {
					t.Fatalf("seq %d after %d: %d lines missing, markers said %d", l.Seq, prev, gap, pendingSkip)
				}
				pendingSkip = 0
				prev = l.Seq
				received++
			}
		}
	}
	if skippedTotal == 0 || received+skippedTotal != total {
		t.Fatalf("received %d, skipped %d, of %d", received, skippedTotal, total)
	}
	// Rows are never dropped: pending ones coalesce, newest wins.
	if len(rows) == 0 || rows[len(rows)-1] != 9 {
		t.Fatalf("the stalled socket's rows: restarts %v, want the last to be 9", rows)
	}
	t.Logf("slow client: received %d, skipped %d, rows %v", received, skippedTotal, rows)
}

// stalled reports whether id's follow has flushed line last and one of its
// sockets still holds a full queue with lines dropped: its writer is stuck.
func (l *logs) stalled(id string, last uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.follows[id]
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 || f.at(f.n-1).seq != last {
		return false
	}
	for c := range f.clients {
		c.mu.Lock()
		stuck := c.dropped > 0 && len(c.lines) == l.opt.QueueLines
		c.mu.Unlock()
		if stuck {
			return true
		}
	}
	return false
}

// A page opened before its instance's log can be read (still provisioning)
// is told so once, and gets the lines when a retry succeeds.
func TestFollowRetriesUntilAvailable(t *testing.T) {
	e, src := logEnv(t, Options{})
	src.mu.Lock()
	src.followFails = map[string]int{"a1": 1}
	src.mu.Unlock()
	c := openPage(t, e, "who=admin&instance=a1")
	m := c.nextOf("skipped", wait)
	if m.Reason != reasonUnavailable {
		t.Fatalf("first marker %+v, want %q", m, reasonUnavailable)
	}
	// The retry comes after reopenFirst; lines emitted once it follows.
	deadline := time.Now().Add(wait)
	for src.followCalls("a1") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("FollowLogs was not retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	emitRange(src, "a1", 1, 3)
	lines, marks := c.linesUntil(3, wait)
	wantSeqs(t, lines, 1, 3)
	if len(marks) != 0 {
		t.Errorf("more markers after the retry: %+v", marks)
	}
}
