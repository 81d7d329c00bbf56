package randtext_test

import (
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/randtext"
)

func TestFrom(t *testing.T) {
	counts := map[rune]int{}
	for i := 0; i < 200; i++ {
		s, err := randtext.From(randtext.Alnum, 62)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 62 {
			t.Fatalf("len %d, want 62", len(s))
		}
		for _, c := range s {
			if !strings.ContainsRune(randtext.Alnum, c) {
				t.Fatalf("%q outside the alphabet", c)
			}
			counts[c]++
		}
	}
	// 12,400 draws over 62 characters: 200 each on average; every one
	// appears, and none is far from its share.
	if len(counts) != 62 {
		t.Errorf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 120 || n > 290 {
			t.Errorf("%q drawn %d times of 12400", c, n)
		}
	}
}
