package systemd

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// Logs come from the journal, which only root writes: php-fpm logs to syslog
// and journald files the lines under the unit. journalctl is run with a fixed
// argv (the unit name is built from a validated id), never through a shell.

const maxLogLines = 10_000

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

func clampLines(n int) int {
	if n <= 0 {
		return 50
	}
	return min(n, maxLogLines)
}

// Logs implements procmgr.Backend.
func (b *Backend) Logs(ctx context.Context, id procmgr.InstanceID, n int) ([]procmgr.LogLine, error) {
	if err := b.checkProvisioned(id); err != nil {
		return nil, err
	}
	release, err := b.journalSlot()
	if err != nil {
		return nil, err
	}
	defer release()
	cmd := exec.CommandContext(ctx, "journalctl", journalArgs(b.host.Layout.UnitName(id), clampLines(n), false)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("systemd: logs of %s: %w", id, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("systemd: logs of %s: journalctl: %w", id, err)
	}
	var lines []procmgr.LogLine
	// An entry too long to be a bounded log line is skipped, and reading
	// goes on: journalctl must never block on a pipe no one drains.
	rerr := procmgr.ReadLines(out, maxJournalLine, func(raw []byte, cut bool) {
		if l, ok := parseJournalLine(raw); ok && !cut {
			lines = append(lines, l)
		}
	})
	if rerr != nil {
		cmd.Process.Kill()
	}
	if err := cmd.Wait(); err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("systemd: logs of %s: journalctl: %w", id, err)
	}
	return lines, nil
}

// FollowLogs implements procmgr.Backend.
func (b *Backend) FollowLogs(ctx context.Context, id procmgr.InstanceID, n int) (<-chan procmgr.LogLine, error) {
	if err := b.checkProvisioned(id); err != nil {
		return nil, err
	}
	release, err := b.journalSlot()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "journalctl", journalArgs(b.host.Layout.UnitName(id), clampLines(n), true)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		release()
		return nil, fmt.Errorf("systemd: follow logs of %s: %w", id, err)
	}
	if err := cmd.Start(); err != nil {
		release()
		return nil, fmt.Errorf("systemd: follow logs of %s: journalctl: %w", id, err)
	}
	ch := make(chan procmgr.LogLine, 256)
	go func() {
		defer release()
		defer close(ch)
		defer cmd.Wait()
		err := procmgr.ReadLines(out, maxJournalLine, func(raw []byte, cut bool) {
			if l, ok := parseJournalLine(raw); ok && !cut {
				procmgr.SendDropOldest(ch, l)
			}
		})
		if err != nil {
			cmd.Process.Kill()
		}
	}()
	return ch, nil
}
