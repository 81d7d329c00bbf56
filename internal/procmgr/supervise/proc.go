package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// What the supervisor reads about processes from /proc. Every value is read
// from files of one PID; nothing here signals or waits.

// procInfo is the part of /proc/<pid>/stat the supervisor needs.
type procInfo struct {
	state      byte   // R, S, D, Z, X, ...
	pgrp       int    // process group
	startTicks uint64 // field 22: start time in clock ticks after boot
	// waitStatus is field 52, the exit status of a zombie in waitpid(2)
	// form; -1 when the kernel does not report it.
	waitStatus int
}

// readProc parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from the last ')'.
func readProc(pid int) (procInfo, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procInfo{}, fmt.Errorf("supervise: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, fmt.Errorf("supervise: /proc/%d/stat: %d fields", pid, len(f))
	}
	pi := procInfo{state: f[0][0], waitStatus: -1}
	pi.pgrp, _ = strconv.Atoi(f[5-3])
	pi.startTicks, err = strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("supervise: /proc/%d/stat: start time: %w", pid, err)
	}
	if len(f) >= 52-3+1 {
		if v, err := strconv.Atoi(f[52-3]); err == nil {
			pi.waitStatus = v
		}
	}
	return pi, nil
}

// dead reports whether the process has exited (a zombie waiting to be reaped
// counts as exited).
func (p procInfo) dead() bool { return p.state == 'Z' || p.state == 'X' || p.state == 'x' }

// procUIDs returns the real and effective uid of pid.
func procUIDs(pid int) (int, int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, -1, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) < 2 {
				break
			}
			r, err1 := strconv.Atoi(f[0])
			e, err2 := strconv.Atoi(f[1])
			if err := errors.Join(err1, err2); err != nil {
				return -1, -1, fmt.Errorf("supervise: /proc/%d/status: %w", pid, err)
			}
			return r, e, nil
		}
	}
	return -1, -1, fmt.Errorf("supervise: /proc/%d/status: no Uid line", pid)
}

// procCmdline is the command line of pid with NULs as spaces. php-fpm
// rewrites its own: "php-fpm: master process (<config>)".
func procCmdline(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimRight(strings.ReplaceAll(string(data), "\x00", " "), " ")
}

// childrenOf lists the children of pid's main thread (php-fpm's master is
// single-threaded, so these are its workers).
func childrenOf(pid int) []int {
	p := strconv.Itoa(pid)
	data, err := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
	if err != nil {
		return nil
	}
	return parsePIDs(data)
}

// groupMembers scans /proc for live processes of process group pgid that run
// as uid. The uid check keeps a recycled group id from naming strangers.
func groupMembers(pgid, uid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pi, err := readProc(pid)
		if err != nil || pi.pgrp != pgid || pi.dead() {
			continue
		}
		if r, _, err := procUIDs(pid); err == nil && r == uid {
			out = append(out, pid)
		}
	}
	return out
}

func parsePIDs(data []byte) []int {
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// exitStatus is how a master ended, as far as the supervisor could learn.
type exitStatus struct {
	known  bool
	exited bool // ended by exit(2); code is valid
	code   int
	signal syscall.Signal // killed by a signal; valid when !exited
	core   bool
}

func statusFromWait(ws syscall.WaitStatus) exitStatus {
	switch {
	case ws.Exited():
		return exitStatus{known: true, exited: true, code: ws.ExitStatus()}
	case ws.Signaled():
		return exitStatus{known: true, signal: ws.Signal(), core: ws.CoreDump()}
	}
	return exitStatus{}
}

// The si_code values of SIGCHLD (include/uapi/asm-generic/siginfo.h).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// statusFromSiginfo decodes what waitid(2) filled in. x/sys/unix leaves the
// union of siginfo_t opaque; for SIGCHLD the 64-bit Linux ABI puts si_pid at
// byte 16 and si_status at byte 24 (three ints and padding to the 8-byte
// aligned union). The panel is built for 64-bit targets only (amd64, arm64).
func statusFromSiginfo(info *unix.Siginfo) (exitStatus, int) {
	raw := (*[unsafe.Sizeof(unix.Siginfo{})]byte)(unsafe.Pointer(info))
	pid := int(*(*int32)(unsafe.Pointer(&raw[16])))
	st := int(*(*int32)(unsafe.Pointer(&raw[24])))
	switch info.Code {
	case cldExited:
		return exitStatus{known: true, exited: true, code: st}, pid
	case cldKilled:
		return exitStatus{known: true, signal: syscall.Signal(st)}, pid
	case cldDumped:
		return exitStatus{known: true, signal: syscall.Signal(st), core: true}, pid
	}
	return exitStatus{}, pid
}

// signalName is the short name systemd and kill(1) use: KILL, SEGV, ...
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return strconv.Itoa(int(sig))
}
