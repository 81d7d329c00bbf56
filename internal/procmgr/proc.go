package procmgr

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcessAlive reports whether pid exists and has not exited (a zombie
// waiting to be reaped counts as exited).
func ProcessAlive(pid int) bool {
	state, ok := processState(pid)
	if !ok {
		return false
	}
	switch state {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// processState is the state letter of /proc/<pid>/stat; ok is false when
// there is no such process. An unreadable state reads as running ('R').
func processState(pid int) (state byte, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain them.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 || i+2 >= len(data) {
		return 'R', true
	}
	return data[i+2], true
}

// ProcessStopped reports whether pid is stopped by a signal (SIGSTOP,
// SIGTSTP) or a tracer: it runs nothing until it is continued.
func ProcessStopped(pid int) bool {
	state, _ := processState(pid)
	return state == 'T' || state == 't'
}

// WaitProcessesGone waits until none of pids is alive, or ctx ends.
func WaitProcessesGone(ctx context.Context, pids []int) error {
	for _, pid := range pids {
		for ProcessAlive(pid) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("procmgr: process %d did not exit: %w", pid, ctx.Err())
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	return nil
}

// WaitFileRewritten waits until path's modification time is no longer was,
// or ctx ends. php-fpm rewrites its pid file when it re-executes on a
// reload: until then a signal sent to it may be lost.
func WaitFileRewritten(ctx context.Context, path string, was time.Time) error {
	for {
		if fi, err := os.Stat(path); err == nil && !fi.ModTime().Equal(was) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("procmgr: %s not rewritten: %w", path, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// Children lists the children of pid, from every thread's children file.
func Children(pid int) []int {
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
