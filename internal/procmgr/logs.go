package procmgr

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"unicode/utf8"
)

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
