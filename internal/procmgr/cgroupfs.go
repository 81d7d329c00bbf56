package procmgr

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// The cgroup files both backends read for usage figures.

// ReadUintFile reads a file holding one unsigned number (memory.current,
// pids.current, cpuacct.usage, ...).
func ReadUintFile(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// ReadCPUStat reads usage_usec from a cgroup v2 cpu.stat, which every v2
// cgroup has, with or without the cpu controller.
func ReadCPUStat(path string) (time.Duration, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			return time.Duration(n) * time.Microsecond, err == nil
		}
	}
	return 0, false
}
