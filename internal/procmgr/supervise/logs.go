package supervise

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// An instance's log: the master's stdout and stderr (php-fpm's error_log is
// /proc/self/fd/2, and workers' output reaches it through
// catch_workers_output) plus the supervisor's own lines, the way systemd's
// lines and the service's share a unit's journal.
//
// The master writes into a FIFO in the root-only state directory. The FIFO
// outlives the panel: a master adopted after a panel restart keeps the same
// stdout, and the new panel simply opens the FIFO again. Lines go into a
// bounded ring in memory and are appended to a root-owned file in the log
// directory, so that Logs after a panel restart still shows the history.

const (
	// ringLines bounds the lines kept in memory per instance.
	ringLines = 2000
	// maxLogFileSize is where the log file is rotated to <id>.log.1; at
	// most twice this is kept per instance.
	maxLogFileSize = 4 << 20
	// maxFollowers bounds the followers of one instance's log.
	maxFollowers = 64
	// fifoSize is the FIFO's capacity: what a master can write while no
	// panel reads (during a panel restart) before its writes fail.
	fifoSize = 1 << 20
	// readBuffer bounds one read line; longer lines are cut (BoundLine
	// cuts them to procmgr.MaxLogLineLen anyway) and the rest skipped.
	readBuffer = 8192
)

// logSink is one instance's log.
type logSink struct {
	id       procmgr.InstanceID
	fifoPath string
	logPath  string
	log      *slog.Logger
	wg       *sync.WaitGroup // the backend's: the reader goroutine counts in it

	mu        sync.Mutex
	ring      lineRing
	loaded    bool // the ring was filled from the file
	file      *os.File
	size      int64
	reader    *os.File // the FIFO, open O_RDWR
	followers map[chan procmgr.LogLine]struct{}
	done      chan struct{} // closed with the sink, to end followers
	closed    bool
	warned    bool   // a write error was logged once
	rec       []byte // the record being written, reused
}

func newLogSink(id procmgr.InstanceID, stateDir, logDir string, log *slog.Logger, wg *sync.WaitGroup) *logSink {
	return &logSink{
		id:        id,
		fifoPath:  stateDir + "/" + string(id) + ".fifo",
		logPath:   logDir + "/" + string(id) + ".log",
		log:       log.With("instance", string(id), "action", "logs"),
		wg:        wg,
		followers: map[chan procmgr.LogLine]struct{}{},
		done:      make(chan struct{}),
	}
}

// openReader makes the FIFO if needed (owned by the instance user: php-fpm
// reopens its error_log through /proc/self/fd/2, which checks the FIFO's own
// permissions; its directory stays root-only, so no other path reaches it)
// and starts reading it once.
func (s *logSink) openReader(uid, gid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("supervise: log of %s: closed", s.id)
	}
	fi, err := os.Lstat(s.fifoPath)
	if err == nil && fi.Mode()&os.ModeNamedPipe == 0 {
		if err := os.Remove(s.fifoPath); err != nil {
			return fmt.Errorf("supervise: log of %s: %w", s.id, err)
		}
		err = os.ErrNotExist
	}
	if errors.Is(err, os.ErrNotExist) {
		if err := unix.Mkfifo(s.fifoPath, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("supervise: log of %s: mkfifo %s: %w", s.id, s.fifoPath, err)
		}
	} else if err != nil {
		return fmt.Errorf("supervise: log of %s: %w", s.id, err)
	}
	if uid >= 0 {
		if err := os.Lchown(s.fifoPath, uid, gid); err != nil {
			return fmt.Errorf("supervise: log of %s: %w", s.id, err)
		}
	}
	if s.reader != nil {
		return nil
	}
	return s.startReaderLocked()
}

// openExisting starts reading a FIFO left by an earlier panel, so that what
// the masters wrote meanwhile is drained at once.
func (s *logSink) openExisting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fi, err := os.Lstat(s.fifoPath); err != nil || fi.Mode()&os.ModeNamedPipe == 0 || s.reader != nil || s.closed {
		return
	}
	if err := s.startReaderLocked(); err != nil {
		s.log.Warn("open log pipe", "err", err)
	}
}

func (s *logSink) startReaderLocked() error {
	// O_RDWR: the panel is a writer too, so the read end never sees EOF
	// when a master exits, and opening never waits for a writer.
	// O_NONBLOCK puts the descriptor under Go's poller, which parks the
	// reading goroutine without a thread and lets Close interrupt it.
	fd, err := unix.Open(s.fifoPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("supervise: log of %s: open %s: %w", s.id, s.fifoPath, err)
	}
	// Best effort: a bigger pipe holds more of what a master writes while
	// the panel restarts.
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, fifoSize)
	f := os.NewFile(uintptr(fd), s.fifoPath)
	s.reader = f
	s.wg.Add(1)
	go s.readLoop(f)
	return nil
}

// writer opens the FIFO's write end for a new master, in blocking mode so
// that the master loses no line while the panel reads (the pipe is drained
// continuously; a write fails with EPIPE only when no panel reads at all). O_CLOEXEC keeps it
// from other children; os/exec duplicates it onto the master's fds 1 and 2,
// which do not have the flag.
func (s *logSink) writer() (*os.File, error) {
	// O_NONBLOCK for the open only: without a reader (the sink closed
	// meanwhile) a blocking open would wait forever; this one fails with
	// ENXIO instead.
	fd, err := unix.Open(s.fifoPath, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("supervise: log of %s: open %s for the master: %w", s.id, s.fifoPath, err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("supervise: log of %s: %w", s.id, err)
	}
	return os.NewFile(uintptr(fd), s.fifoPath), nil
}

// A master's output is rate-limited, as journald limits a unit's: tenant
// code can write to the master's stderr, and every line kept costs the
// panel (root) a write and a fan-out. Past the limit lines are counted and
// dropped, and one line says how many.
const (
	rateWindow   = time.Second
	rateMaxLines = 1000
)

func (s *logSink) readLoop(f *os.File) {
	defer s.wg.Done()
	r := bufio.NewReaderSize(f, readBuffer)
	skipping := false
	windowStart, inWindow, suppressed := time.Now(), 0, 0
	keep := func() bool {
		if now := time.Now(); now.Sub(windowStart) >= rateWindow {
			if suppressed > 0 {
				s.add(fmt.Sprintf("Suppressed %d lines of output (more than %d a second).", suppressed, rateMaxLines))
			}
			windowStart, inWindow, suppressed = now, 0, 0
		}
		if inWindow >= rateMaxLines {
			suppressed++
			return false
		}
		inWindow++
		return true
	}
	for {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !skipping && keep() {
				s.add(string(line))
			}
			skipping = true
			continue
		case err != nil:
			// Closed by Close or Deprovision.
			return
		}
		if skipping {
			skipping = false
			continue
		}
		if text := bytes.TrimRight(line, "\r\n"); len(text) > 0 && keep() {
			s.add(string(text))
		}
	}
}

// add appends lines written now.
func (s *logSink) add(texts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, t := range texts {
		l := procmgr.LogLine{At: time.Now().UTC(), Text: procmgr.BoundLine(t)}
		s.writeFileLocked(l)
		s.pushLocked(l)
		for ch := range s.followers {
			// Sent under s.mu, so each channel has one sender at a time.
			procmgr.SendDropOldest(ch, l)
		}
	}
}

func (s *logSink) pushLocked(l procmgr.LogLine) { s.ring.push(l) }

// lineRing is the last lines of one instance's log kept in memory: at most
// ringLines, and only while procmgr.LogMemory has room. Without room the
// ring gives up its own oldest lines first; a line that does not fit even
// then is in the log file only. partial says lines before the ring's are
// not in it (they left, or were never kept): reads of more lines than it
// holds go to the file.
type lineRing struct {
	lines   []procmgr.LogLine // lines[head:] oldest first
	head    int
	bytes   int64 // reserved from procmgr.LogMemory
	partial bool
}

func (r *lineRing) len() int { return len(r.lines) - r.head }

func (r *lineRing) popOldest() {
	old := r.lines[r.head]
	r.lines[r.head] = procmgr.LogLine{}
	r.head++
	cost := procmgr.LineCost(old)
	r.bytes -= cost
	procmgr.LogMemory.Release(cost)
	r.partial = true
	if r.head > ringLines/2 && r.head*2 > len(r.lines) {
		n := copy(r.lines, r.lines[r.head:])
		clear(r.lines[n:])
		r.lines, r.head = r.lines[:n], 0
	}
}

func (r *lineRing) push(l procmgr.LogLine) {
	if r.len() >= ringLines {
		r.popOldest()
	}
	cost := procmgr.LineCost(l)
	for !procmgr.LogMemory.Reserve(cost) {
		if r.len() == 0 {
			r.partial = true // the budget is spent by others: file only
			return
		}
		r.popOldest()
	}
	r.bytes += cost
	r.lines = append(r.lines, l)
}

// reset replaces the ring's lines (read from the file); partial when the
// file may hold more.
func (r *lineRing) reset(lines []procmgr.LogLine, partial bool) {
	r.free()
	r.partial = partial
	for _, l := range lines {
		r.push(l)
	}
}

// last returns up to n of the newest lines, oldest first.
func (r *lineRing) last(n int) []procmgr.LogLine {
	n = min(n, r.len())
	return append([]procmgr.LogLine(nil), r.lines[len(r.lines)-n:]...)
}

// free gives the ring's lines and their budget back.
func (r *lineRing) free() {
	procmgr.LogMemory.Release(r.bytes)
	clear(r.lines)
	r.lines, r.head, r.bytes = r.lines[:0], 0, 0
}

func (s *logSink) writeFileLocked(l procmgr.LogLine) {
	if s.file == nil {
		f, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			s.warnOnce("open log file", err)
			return
		}
		fi, _ := f.Stat()
		s.file, s.size = f, fi.Size()
	}
	// One reused buffer per sink: at a thousand lines a second per
	// instance, a new string per record was most of the daemon's garbage.
	rec := l.At.AppendFormat(s.rec[:0], time.RFC3339Nano)
	rec = append(append(append(rec, ' '), l.Text...), '\n')
	s.rec = rec
	if s.size+int64(len(rec)) > maxLogFileSize {
		s.file.Close()
		s.file = nil
		if err := os.Rename(s.logPath, s.logPath+".1"); err != nil {
			s.warnOnce("rotate log file", err)
		}
		f, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			s.warnOnce("open log file", err)
			return
		}
		s.file, s.size = f, 0
	}
	n, err := s.file.Write(rec)
	s.size += int64(n)
	if err != nil {
		s.warnOnce("write log file", err)
	}
}

func (s *logSink) warnOnce(what string, err error) {
	if !s.warned {
		s.warned = true
		s.log.Warn(what, "path", s.logPath, "err", err)
	}
}

// lastLocked returns up to n of the last lines, oldest first. The ring is
// filled from the files at first use, so history from before a panel
// restart is there; a ring that is not full holds everything there is.
func (s *logSink) lastLocked(n int) []procmgr.LogLine {
	if !s.loaded {
		s.loaded = true
		// Every line added so far is in the file too; the file has more
		// unless it could not be written.
		if tail := readTail(s.logPath, ringLines); len(tail) >= s.ring.len() {
			s.ring.reset(tail, len(tail) >= ringLines)
		}
	}
	if n > s.ring.len() && s.ring.partial {
		return readTail(s.logPath, n)
	}
	return s.ring.last(n)
}

func (s *logSink) last(n int) []procmgr.LogLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastLocked(n)
}

// follow returns a channel with the last n lines, then every new one until
// ctx ends or the sink closes.
func (s *logSink) follow(ctx context.Context, n int) (<-chan procmgr.LogLine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("supervise: log of %s: closed", s.id)
	}
	if len(s.followers) >= maxFollowers {
		return nil, fmt.Errorf("supervise: log of %s: %d followers already: %w", s.id, maxFollowers, procmgr.ErrConflict)
	}
	backlog := s.lastLocked(n)
	ch := make(chan procmgr.LogLine, len(backlog)+procmgr.FollowBuffer)
	for _, l := range backlog {
		ch <- l
	}
	s.followers[ch] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.done:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.followers[ch]; ok {
			delete(s.followers, ch)
			close(ch)
		}
	}()
	return ch, nil
}

// close stops reading and writing, and ends every follower. The FIFO and
// the files stay (a later panel reads on).
func (s *logSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	if s.reader != nil {
		s.reader.Close()
		s.reader = nil
	}
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	for ch := range s.followers {
		delete(s.followers, ch)
		close(ch)
	}
	s.ring.free()
}

// remove closes the sink and deletes the FIFO and the log files.
func (s *logSink) remove() error {
	s.close()
	var errs []error
	for _, p := range []string{s.fifoPath, s.logPath, s.logPath + ".1"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("supervise: %w", err))
		}
	}
	return errors.Join(errs...)
}

// readTail reads the last n lines of the log file, and of the rotated one
// before it when the current one has fewer. It reads backwards in chunks,
// so a long file costs only what is returned.
func readTail(path string, n int) []procmgr.LogLine {
	lines := tailLines(path, n)
	if len(lines) < n {
		lines = append(tailLines(path+".1", n-len(lines)), lines...)
	}
	out := make([]procmgr.LogLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, parseRecord(l))
	}
	return out
}

func tailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	const chunk = 64 << 10
	end := fi.Size()
	var buf []byte
	for end > 0 && bytes.Count(buf, []byte{'\n'}) <= n {
		start := max(end-chunk, 0)
		part := make([]byte, end-start)
		if _, err := f.ReadAt(part, start); err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		buf = append(part, buf...)
		end = start
	}
	all := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if end > 0 && len(all) > 0 {
		// The first piece may be the tail of a line cut by the chunking.
		all = all[1:]
	}
	if len(all) == 1 && all[0] == "" {
		return nil
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// parseRecord reads "<RFC 3339 time> <text>" back.
func parseRecord(rec string) procmgr.LogLine {
	ts, text, ok := strings.Cut(rec, " ")
	if at, err := time.Parse(time.RFC3339Nano, ts); ok && err == nil {
		return procmgr.LogLine{At: at, Text: text}
	}
	return procmgr.LogLine{Text: rec}
}

// Logs implements procmgr.LogReader.
func (b *Backend) Logs(ctx context.Context, id procmgr.InstanceID, n int) ([]procmgr.LogLine, error) {
	if err := b.host.Provisioned(id); err != nil {
		return nil, err
	}
	return b.instance(id).sink.last(procmgr.ClampLogLines(n)), nil
}

// FollowLogs implements procmgr.LogReader. The channel holds the backlog
// and procmgr.FollowBuffer more lines; a reader that falls behind loses the
// oldest.
func (b *Backend) FollowLogs(ctx context.Context, id procmgr.InstanceID, n int) (<-chan procmgr.LogLine, error) {
	if err := b.host.Provisioned(id); err != nil {
		return nil, err
	}
	return b.instance(id).sink.follow(ctx, procmgr.ClampLogLines(n))
}
