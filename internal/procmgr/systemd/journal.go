package systemd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// Logs come from the journal, which only root writes: php-fpm logs to syslog
// and journald files the lines under the unit. journalctl is run with a fixed
// argv (the unit name is built from a validated id), never through a shell.

// maxJournalReaders bounds the journalctl processes the backend runs at once
// (each -f holds an inotify instance of root's, of which there are 128).
const maxJournalReaders = 32

// ErrTooManyReaders means every journal reader slot is taken.
var errTooManyReaders = fmt.Errorf("systemd: %d log readers already running; try again later: %w", maxJournalReaders, procmgr.ErrConflict)

// journalSlot takes a journal reader slot, or fails at once.
func (b *Backend) journalSlot() (func(), error) {
	select {
	case b.readers <- struct{}{}:
		return func() { <-b.readers }, nil
	default:
		return nil, errTooManyReaders
	}
}

// maxJournalLine bounds one JSON entry read from journalctl; a log line is
// cut at 4 KiB anyway, and JSON escaping can make it a few times longer.
const maxJournalLine = 64 << 10

func journalArgs(unit string, n int, follow bool) []string {
	args := []string{"--unit", unit, "--output", "json", "--no-pager", "--quiet",
		"--output-fields", "MESSAGE,__REALTIME_TIMESTAMP", "--lines", strconv.Itoa(n)}
	if follow {
		args = append(args, "--follow")
	}
	return args
}

type journalEntry struct {
	Message  json.RawMessage `json:"MESSAGE"`
	Realtime string          `json:"__REALTIME_TIMESTAMP"`
}

func parseJournalLine(raw []byte) (procmgr.LogLine, bool) {
	var e journalEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return procmgr.LogLine{}, false
	}
	var text string
	if err := json.Unmarshal(e.Message, &text); err != nil {
		// journald encodes a message that is not UTF-8 as an array of bytes.
		var bs []byte
		var ints []int
		if json.Unmarshal(e.Message, &ints) == nil {
			for _, i := range ints {
				bs = append(bs, byte(i))
			}
			text = string(bs)
		}
	}
	usec, _ := strconv.ParseInt(e.Realtime, 10, 64)
	return procmgr.LogLine{At: time.UnixMicro(usec).UTC(), Text: procmgr.BoundLine(text)}, true
}

// journal starts journalctl for the last n lines of id's log (and new ones
// when follow) in a journal reader slot. The caller reads out, then calls
// done, which waits for journalctl and frees the slot.
func (b *Backend) journal(ctx context.Context, id procmgr.InstanceID, n int, follow bool) (out io.Reader, done func() error, err error) {
	if err := b.host.Provisioned(id); err != nil {
		return nil, nil, err
	}
	release, err := b.journalSlot()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, "journalctl", journalArgs(b.host.Layout.UnitName(id), procmgr.ClampLogLines(n), follow)...)
	if out, err = cmd.StdoutPipe(); err == nil {
		err = cmd.Start()
	}
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("systemd: logs of %s: journalctl: %w", id, err)
	}
	return out, func() error { defer release(); return cmd.Wait() }, nil
}

// readJournal passes each entry of out to fn. An entry too long to be a
// bounded log line is skipped, and reading goes on: journalctl must never
// block on a pipe no one drains. It returns the read error, if any; the
// caller then stops journalctl (its context).
func readJournal(out io.Reader, fn func(procmgr.LogLine)) error {
	return procmgr.ReadLines(out, maxJournalLine, func(raw []byte, cut bool) {
		if l, ok := parseJournalLine(raw); ok && !cut {
			fn(l)
		}
	})
}

// Logs implements procmgr.LogReader.
func (b *Backend) Logs(ctx context.Context, id procmgr.InstanceID, n int) ([]procmgr.LogLine, error) {
	jctx, stop := context.WithCancel(ctx)
	defer stop()
	out, done, err := b.journal(jctx, id, n, false)
	if err != nil {
		return nil, err
	}
	// The lines gathered count against the daemon's log memory until they
	// are handed over: 32 readers of 10,000 long lines could otherwise
	// hold more than a gigabyte at once.
	var lines []procmgr.LogLine
	var held int64
	defer func() { procmgr.LogMemory.Release(held) }()
	spent := false
	rerr := readJournal(out, func(l procmgr.LogLine) {
		if spent {
			return
		}
		if cost := procmgr.LineCost(l); procmgr.LogMemory.Reserve(cost) {
			held += cost
			lines = append(lines, l)
			return
		}
		spent = true
		stop()
	})
	if rerr != nil {
		stop()
	}
	werr := done()
	switch {
	case spent:
		return nil, fmt.Errorf("systemd: logs of %s: %w", id, procmgr.ErrLogMemory)
	case rerr != nil:
		return nil, fmt.Errorf("systemd: logs of %s: %w", id, rerr)
	case werr != nil && ctx.Err() == nil:
		return nil, fmt.Errorf("systemd: logs of %s: journalctl: %w", id, werr)
	}
	return lines, nil
}

// FollowLogs implements procmgr.LogReader.
func (b *Backend) FollowLogs(ctx context.Context, id procmgr.InstanceID, n int) (<-chan procmgr.LogLine, error) {
	ctx, cancel := context.WithCancel(ctx)
	out, done, err := b.journal(ctx, id, n, true)
	if err != nil {
		cancel()
		return nil, err
	}
	ch := make(chan procmgr.LogLine, procmgr.FollowBuffer)
	go func() {
		defer close(ch)
		defer done()
		defer cancel()
		readJournal(out, func(l procmgr.LogLine) { procmgr.SendDropOldest(ch, l) })
	}()
	return ch, nil
}
