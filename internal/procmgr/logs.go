package procmgr

import "unicode/utf8"

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
