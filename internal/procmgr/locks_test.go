package procmgr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

func TestLocksSerialisePerInstance(t *testing.T) {
	var l procmgr.Locks
	ctx := context.Background()
	unlockA, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.TryLock("a"); ok {
		t.Fatal("TryLock took a held lock")
	}
	// Another instance is not held up.
	unlockB, ok := l.TryLock("b")
	if !ok {
		t.Fatal("lock of b blocked by a")
	}
	unlockB()
	// A waiter gives up when its context ends.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting on a held lock: %v, want deadline exceeded", err)
	}
	got := make(chan struct{})
	go func() {
		unlock, err := l.Lock(ctx, "a")
		if err == nil {
			unlock()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("second holder got the lock while the first held it")
	case <-time.After(20 * time.Millisecond):
	}
	unlockA()
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("waiter never got the released lock")
	}
	if u, ok := l.TryLock("a"); !ok {
		t.Fatal("lock not free after both released it")
	} else {
		u()
	}
}

func TestFanoutDropsOldestForSlowReader(t *testing.T) {
	var f procmgr.Fanout[int]
	ctx, cancel := context.WithCancel(context.Background())
	slow, err := f.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < procmgr.SubscriberBuffer+10; i++ {
		f.Publish(i) // never blocks, though nobody reads
	}
	if first := <-slow; first != 10 {
		t.Errorf("oldest kept value %d, want 10 (the first 10 dropped)", first)
	}
	cancel()
	deadline := time.After(time.Second)
	for {
		select {
		case _, ok := <-slow:
			if !ok {
				f.Close()
				if ch, err := f.Join(context.Background()); !errors.Is(err, procmgr.ErrClosed) || ch != nil {
					t.Errorf("subscribe after Close: %v, %v; want ErrClosed and no channel", ch, err)
				}
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after its context ended")
		}
	}
}

func TestFanoutSubscribePastTheCapFails(t *testing.T) {
	var f procmgr.Fanout[int]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < procmgr.MaxSubscribers; i++ {
		if _, err := f.Join(ctx); err != nil {
			t.Fatalf("subscriber %d of %d: %v", i+1, procmgr.MaxSubscribers, err)
		}
	}
	ch, err := f.Join(ctx)
	if !errors.Is(err, procmgr.ErrTooManySubscribers) || !errors.Is(err, procmgr.ErrConflict) || ch != nil {
		t.Fatalf("subscriber past the cap: %v, %v; want ErrTooManySubscribers (a conflict) and no channel", ch, err)
	}
	// A place freed by a subscriber that left is free again.
	one, cancelOne := context.WithCancel(context.Background())
	cancel()
	deadline := time.Now().Add(time.Second)
	for {
		if _, err := f.Join(one); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no place after every subscriber left: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	cancelOne()
}

func TestReadLinesSkipsOverlongLines(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nafter\nlast-no-newline"
	var got []string
	var cuts int
	err := procmgr.ReadLines(strings.NewReader(in), 32, func(l []byte, cut bool) {
		if cut {
			cuts++
			if len(l) != 32 {
				t.Errorf("cut line has %d bytes, want 32", len(l))
			}
			return
		}
		got = append(got, string(l))
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "short|after|last-no-newline" || cuts != 1 {
		t.Errorf("lines %q, cuts %d", got, cuts)
	}
}
