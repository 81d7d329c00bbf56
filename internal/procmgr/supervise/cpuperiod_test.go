package supervise

import "testing"

// The quota per period is never under the kernel's 1 ms, and the period
// is 2 ms wherever that allows.
func TestCPUPeriod(t *testing.T) {
	for pct, want := range map[uint64]uint64{1: 100_000, 3: 33_334, 40: 2_500, 50: 2_000, 100: 2_000, 100_000: 2_000} {
		got := cpuPeriod(pct)
		if got != want || pct*got/100 < 1000 {
			t.Errorf("cpuPeriod(%d%%) = %d us (quota %d us), want %d", pct, got, pct*got/100, want)
		}
	}
}
