package procmgrtest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger writes a component's log lines into the test's output until the
// test ends, then drops them: a backend or a reconciler may still finish a
// step while shutting down, and logging after a test ended panics.
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{tb: tb}
	tb.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
