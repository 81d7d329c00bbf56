package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

func newTestSink(t *testing.T, dir string, wg *sync.WaitGroup) *logSink {
	return newLogSink("t-logs", dir, dir, slog.New(slog.DiscardHandler), wg)
}

// The log file rotates at maxLogFileSize, and a new panel (a new sink on the
// same files) serves the history in order, from the ring or the files.
func TestLogRotationAndHistory(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	s := newTestSink(t, dir, &wg)
	line := strings.Repeat("x", 200)
	// Enough to rotate once: 4 MiB of ~236-byte records is ~17800.
	const total = 25_000
	for i := 0; i < total; i++ {
		s.add(fmt.Sprintf("%06d %s", i, line))
	}
	s.close()
	if _, err := os.Stat(s.logPath + ".1"); err != nil {
		t.Fatalf("no rotated file: %v", err)
	}
	if fi, _ := os.Stat(s.logPath); fi.Size() > maxLogFileSize {
		t.Errorf("log file is %d bytes, over the %d limit", fi.Size(), maxLogFileSize)
	}

	s2 := newTestSink(t, dir, &wg)
	defer s2.close()
	check := func(got []procmgr.LogLine, n int) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("got %d lines, want %d", len(got), n)
		}
		for i, l := range got {
			want := fmt.Sprintf("%06d ", total-n+i)
			if !strings.HasPrefix(l.Text, want) || l.At.IsZero() {
				t.Fatalf("line %d of %d is %.20q at %v, want %q...", i, n, l.Text, l.At, want)
			}
		}
	}
	check(s2.last(10), 10)
	check(s2.last(ringLines), ringLines)
	// More than the ring holds: read from both files.
	check(s2.last(procmgr.MaxLogLines), procmgr.MaxLogLines)

	s2.add("new line")
	got := s2.last(2)
	if got[1].Text != "new line" || !strings.HasPrefix(got[0].Text, fmt.Sprintf("%06d ", total-1)) {
		t.Errorf("after a new line: %q", got)
	}
}

// A line longer than the read buffer is cut and marked; the next line is
// intact; followers get the backlog and then new lines.
func TestLogPipeLongLinesAndFollow(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	s := newTestSink(t, dir, &wg)
	if err := s.openReader(-1, -1); err != nil {
		t.Fatal(err)
	}
	s.add("before")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := s.follow(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.writer()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "%s\nnext\n", strings.Repeat("é", 10_000))
	w.Close()
	var got []string
	for len(got) < 3 {
		select {
		case l := <-ch:
			got = append(got, l.Text)
		case <-ctx.Done():
			t.Fatalf("follow got only %d lines", len(got))
		}
	}
	if got[0] != "before" {
		t.Errorf("backlog %q, want \"before\"", got[0])
	}
	if len(got[1]) > procmgr.MaxLogLineLen || !strings.HasSuffix(got[1], " [cut]") {
		t.Errorf("long line: %d bytes, ends %q", len(got[1]), got[1][max(0, len(got[1])-10):])
	}
	if got[2] != "next" {
		t.Errorf("line after the long one: %.20q, want \"next\"", got[2])
	}
	s.close()
	if _, ok := <-ch; ok {
		t.Errorf("follow channel still open after close")
	}
	wg.Wait()
}

// The rings of every instance share procmgr.LogMemory: what they hold never
// exceeds it; a ring out of room gives up its own oldest lines, and one
// whose lines the others hold keeps none (its reads go to the file). Freed
// rings give their bytes back.
func TestRingsShareTheLogMemoryBudget(t *testing.T) {
	saved := procmgr.LogMemory.Limit()
	base := procmgr.LogMemory.Used()
	const limit = 64 << 10
	procmgr.LogMemory.SetLimit(base + limit)
	t.Cleanup(func() { procmgr.LogMemory.SetLimit(saved) })

	line := func(i int) procmgr.LogLine {
		return procmgr.LogLine{Text: fmt.Sprintf("%04d %s", i, strings.Repeat("x", 1000))}
	}
	var a, b lineRing
	for i := range 200 {
		a.push(line(i))
		if used := procmgr.LogMemory.Used() - base; used > limit {
			t.Fatalf("after %d lines the rings hold %d bytes, over the budget of %d", i+1, used, limit)
		}
	}
	if a.len() == 0 || a.len() >= 200 || !a.partial {
		t.Fatalf("ring a holds %d lines (partial %v), want fewer than 200 and marked partial", a.len(), a.partial)
	}
	if got := a.last(1)[0].Text; got != line(199).Text {
		t.Errorf("ring a's newest line %.10q, want line 199", got)
	}
	// a holds the whole budget: b keeps nothing, and says so.
	b.push(line(0))
	if b.len() != 0 || !b.partial {
		t.Errorf("ring b kept %d lines with the budget spent by a (partial %v)", b.len(), b.partial)
	}
	a.free()
	if used := procmgr.LogMemory.Used() - base; used != 0 {
		t.Errorf("%d bytes still reserved after the ring was freed", used)
	}
	b.push(line(1))
	if b.len() != 1 {
		t.Errorf("ring b kept %d lines once a was freed, want 1", b.len())
	}
	b.free()
}
