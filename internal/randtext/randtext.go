// Package randtext makes random strings for passwords and secrets from the
// system's random source, each character drawn uniformly from an alphabet.
package randtext

import (
	"crypto/rand"
	"fmt"
)

// Alnum is ASCII letters and digits: safe unquoted in SQL literals, PHP
// single-quoted strings and config files.
const Alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// From returns n characters of alphabet (at most 256 distinct bytes).
func From(alphabet string, n int) (string, error) {
	out := make([]byte, n)
	// Rejection sampling: bytes at or above the largest multiple of the
	// alphabet size would make the first characters likelier than the rest.
	limit := 256 - 256%len(alphabet)
	buf := make([]byte, 64)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("randtext: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out[i] = alphabet[int(b)%len(alphabet)]
			if i++; i == n {
				break
			}
		}
	}
	return string(out), nil
}
