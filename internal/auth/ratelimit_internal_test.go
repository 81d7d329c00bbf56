package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestLimiterTablesBounded floods the limiter with more names and addresses than it holds and
// checks that it keeps at most MaxLimiterEntries of each, forgetting the least recently failed.
func TestLimiterTablesBounded(t *testing.T) {
	l := newLoginLimiter()
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range MaxLimiterEntries {
		if wait := l.take(fmt.Sprintf("name%d", i), fmt.Sprintf("addr%d", i), now); wait != 0 {
			t.Fatalf("attempt %d limited", i)
		}
	}
	// name0 fails again: it becomes the most recent, and name1 the oldest.
	l.take("name0", "addr0", now)
	for i := range 2 * MaxLimiterEntries {
		l.take(fmt.Sprintf("flood%d", i), fmt.Sprintf("faddr%d", i), now)
		if n := l.accounts.len(); n > MaxLimiterEntries {
			t.Fatalf("account table holds %d entries, more than %d", n, MaxLimiterEntries)
		}
		if n := l.addresses.len(); n > MaxLimiterEntries {
			t.Fatalf("address table holds %d entries, more than %d", n, MaxLimiterEntries)
		}
		if i == MaxLimiterEntries-2 {
			// Everything but name0 has been pushed out by now; name0 goes next.
			if _, ok := l.accounts.entries["name0"]; !ok {
				t.Error("name0, failed recently, was evicted before older names")
			}
			if _, ok := l.accounts.entries["name1"]; ok {
				t.Error("name1, the oldest, was not evicted")
			}
		}
	}
	if _, ok := l.accounts.entries[fmt.Sprintf("flood%d", 2*MaxLimiterEntries-1)]; !ok {
		t.Error("the newest name is not held")
	}
}

// TestFailureTableWindow: failures age out of the window, and wait says when.
func TestFailureTableWindow(t *testing.T) {
	ft := newFailureTable(3, time.Minute, 10)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		if w := ft.wait("k", now); w != 0 {
			t.Fatalf("failure %d: wait %s", i, w)
		}
		ft.add("k", now)
		now = now.Add(10 * time.Second)
	}
	if w := ft.wait("k", now); w != 30*time.Second {
		t.Errorf("wait = %s, want 30s (the first failure leaves the window then)", w)
	}
	ft.remove("k", now.Add(-10*time.Second)) // take back the last one
	if w := ft.wait("k", now); w != 0 {
		t.Errorf("after taking one back: wait %s", w)
	}
	now = now.Add(time.Minute)
	if w := ft.wait("k", now); w != 0 || ft.len() != 0 {
		t.Errorf("after the window: wait %s, %d entries; want 0, 0", w, ft.len())
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                 "192.0.2.1",
		"::ffff:192.0.2.1":          "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1%eth0": "2001:db8:1:2::/64",
		"fe80::1":                   "fe80::/64",
		"2001:db8:1:3::1":           "2001:db8:1:3::/64",
	} {
		a, err := netip.ParseAddr(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := addressKey(a); got != want {
			t.Errorf("addressKey(%s) = %q, want %q", in, got, want)
		}
	}
	if got := addressKey(netip.Addr{}); got != "unknown" {
		t.Errorf("addressKey(no address) = %q, want the shared \"unknown\"", got)
	}
}
