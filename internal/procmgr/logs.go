package procmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// LogReader is a backend that keeps its instances' logs (both of ours do:
// the journal, the supervisor's pipe and files). Use ReadLogs and
// FollowLogs.
type LogReader interface {
	// Logs returns up to n of the last log lines, oldest first (n is
	// clamped by ClampLogLines). An absent instance returns ErrNotFound; an
	// instance with no log yet, no lines.
	Logs(ctx context.Context, id InstanceID, n int) ([]LogLine, error)

	// FollowLogs streams the last n lines and then new ones until ctx
	// ends; the channel is closed then. A reader that falls behind loses
	// lines rather than blocking the backend.
	FollowLogs(ctx context.Context, id InstanceID, n int) (<-chan LogLine, error)
}

// Bounds of one log request.
const (
	// DefaultLogLines is what a request for n <= 0 lines gets.
	DefaultLogLines = 50
	// MaxLogLines is the most lines one request gets.
	MaxLogLines = 10_000
	// FollowBuffer is how many new lines a follower may fall behind by
	// before it loses the oldest.
	FollowBuffer = 256
)

// ClampLogLines is the number of lines a request for n gets.
func ClampLogLines(n int) int {
	if n <= 0 {
		return DefaultLogLines
	}
	return min(n, MaxLogLines)
}

// ReadLogs returns up to n of the last log lines of id, when b keeps logs
// (LogReader). For a backend that keeps none it returns an error wrapping
// ErrUnsupported (ErrNotFound first, for an absent instance).
func ReadLogs(ctx context.Context, b StatusReader, id InstanceID, n int) ([]LogLine, error) {
	if lr, ok := b.(LogReader); ok {
		return lr.Logs(ctx, id, n)
	}
	return nil, noLogs(ctx, b, id)
}

// FollowLogs streams id's log as LogReader.FollowLogs does, when b keeps
// logs; otherwise it fails as ReadLogs does.
func FollowLogs(ctx context.Context, b StatusReader, id InstanceID, n int) (<-chan LogLine, error) {
	if lr, ok := b.(LogReader); ok {
		return lr.FollowLogs(ctx, id, n)
	}
	return nil, noLogs(ctx, b, id)
}

func noLogs(ctx context.Context, b StatusReader, id InstanceID) error {
	if _, err := b.Status(ctx, id); err != nil {
		return err
	}
	return fmt.Errorf("procmgr: logs of %s: this backend keeps no logs: %w", id, ErrUnsupported)
}

// BoundLine cuts a log line to MaxLogLineLen bytes on a rune boundary and
// marks the cut.
func BoundLine(s string) string {
	if len(s) <= MaxLogLineLen {
		return s
	}
	cut := MaxLogLineLen - len(" [cut]")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + " [cut]"
}

// SendDropOldest sends v on ch; when ch is full it drops the oldest value
// first, so a slow reader never blocks the sender. Only one goroutine may
// send on ch.
func SendDropOldest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

// ReadLines calls fn for each line of r without its newline. A line longer
// than max is passed cut to its first max bytes, once, and the rest of it is
// skipped, so one overlong line never stops the reading. It returns r's
// error, nil at EOF.
func ReadLines(r io.Reader, max int, fn func(line []byte, cut bool)) error {
	br := bufio.NewReaderSize(r, max)
	skipping := false
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !skipping {
				fn(line, true)
				skipping = true
			}
			continue
		case err != nil && len(line) == 0:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if !skipping {
			fn(bytes.TrimRight(line, "\r\n"), false)
		}
		skipping = false
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
