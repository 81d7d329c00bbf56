package procmgr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A panel killed during useradd leaves the useradd running; the next panel
// waits while it holds the account files' locks, and not for a lock whose
// process is gone.
func TestWaitAccountLocks(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "group.lock")
	saved := accountLocks
	accountLocks = []string{filepath.Join(dir, "passwd.lock"), lock}
	t.Cleanup(func() { accountLocks = saved })

	// Held by a live process (this one): waited for until it goes.
	if err := os.WriteFile(lock, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := waitAccountLocks(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with the lock held: %v, want the wait to last until the deadline", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		os.Remove(lock)
	}()
	if err := waitAccountLocks(t.Context()); err != nil {
		t.Fatalf("after the lock went: %v", err)
	}

	// Stale: its process is gone.
	gone := 1 << 22 // a pid nothing runs as
	for ; ; gone++ {
		if _, err := os.Stat("/proc/" + strconv.Itoa(gone)); err != nil {
			break
		}
	}
	os.WriteFile(lock, []byte(strconv.Itoa(gone)), 0o600)
	ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second)
	defer cancel2()
	if err := waitAccountLocks(ctx2); err != nil {
		t.Fatalf("a stale lock was waited for: %v", err)
	}
}
