package coalesce

import (
	"slices"
	"sync"
	"testing"
)

func TestQueueKeepsOrderAndNewestValue(t *testing.T) {
	var q Queue[string, int]
	for i, k := range []string{"a", "b", "a", "c", "b"} {
		q.Put(k, i)
	}
	if q.Len() != 3 {
		t.Fatalf("Len = %d, want 3", q.Len())
	}
	k, v, ok := q.Pop()
	if !ok || k != "a" || v != 2 {
		t.Fatalf("Pop = %q %d %v, want a 2 true", k, v, ok)
	}
	if got := q.Drain(nil); !slices.Equal(got, []int{4, 3}) {
		t.Fatalf("Drain = %v, want [4 3] (b's newest, then c)", got)
	}
	if _, _, ok := q.Pop(); ok || q.Len() != 0 {
		t.Fatal("queue not empty after Drain")
	}
	// A key taken can be queued again.
	if !q.Put("a", 9) {
		t.Fatal("Put of a taken key did not queue it anew")
	}
}

// Fed forever, one key at a time, the queue's slice stays small.
func TestQueueDoesNotGrowWhenFedForever(t *testing.T) {
	var q Queue[int, struct{}]
	for i := range 100_000 {
		q.Put(i, struct{}{})
		q.Put(i+1, struct{}{})
		q.Pop()
	}
	if c := cap(q.order); c > 4096 {
		t.Fatalf("order slice capacity %d after 100,000 puts with at most 2 queued", c)
	}
}

// 10,000 keys added many times each from many goroutines: every key comes
// out, once.
func TestSetNeverDropsAndDeduplicates(t *testing.T) {
	var s Set[int]
	const keys = 10_000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				s.Add((i + w*1000) % keys)
			}
		}()
	}
	wg.Wait()
	if s.Len() != keys {
		t.Fatalf("Len = %d, want %d", s.Len(), keys)
	}
	<-s.Ready()
	seen := map[int]bool{}
	for {
		k, ok := s.Take()
		if !ok {
			break
		}
		if seen[k] {
			t.Fatalf("key %d taken twice", k)
		}
		seen[k] = true
	}
	if len(seen) != keys {
		t.Fatalf("took %d keys, want %d", len(seen), keys)
	}
}
