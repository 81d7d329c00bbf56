package supervise

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// master is one php-fpm master process.
type master struct {
	pid   int
	uid   int
	ticks uint64    // start time, see savedState
	cmd   *exec.Cmd // nil when adopted from an earlier panel
	// pidf is a pidfd of the master, under Go's poller: the watcher waits
	// on it without a thread, and signals through it can never reach a
	// process that reused the PID.
	pidf   *os.File
	ready  chan struct{} // closed once the pool answered a ping
	exited chan struct{} // closed once the exit has been handled

	// mu orders group kills against reaping: until the master is reaped,
	// its zombie keeps its process group id from being reused.
	mu     sync.Mutex
	reaped bool

	// Guarded by Backend.mu.
	expected bool   // a Stop, Restart or Deprovision asked for the exit
	timedOut bool   // killed for not starting or stopping in time
	oomBase  uint64 // the cgroup's OOM kill count when last looked at
}

// signal sends sig to the master alone, through its pidfd.
func (m *master) signal(sig syscall.Signal) error {
	rc, err := m.pidf.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	return serr
}

// waitExit blocks until the master has exited (it is then a zombie, not yet
// reaped) or the pidfd is closed (the backend is closing).
func (m *master) waitExit() error {
	rc, err := m.pidf.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err == nil && n > 0
		}
	})
}

// killGroup kills the master's process group (Setsid made the master its
// leader), where php-fpm's workers live: orphaned workers would otherwise
// keep answering on the socket. For a master of our own this runs only
// before reaping, while the group id cannot have been reused; for an adopted
// one, only processes of the group running as the instance user are hit.
func (m *master) killGroup() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.killGroupLocked()
}

func (m *master) killGroupLocked() {
	if m.reaped {
		return
	}
	if m.cmd != nil {
		_ = unix.Kill(-m.pid, unix.SIGKILL)
		return
	}
	for _, p := range groupMembers(m.pid, m.uid) {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

// reap collects the exit status of the exited master.
func (m *master) reap() exitStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.killGroupLocked()
	defer func() { m.reaped = true }()
	if m.cmd != nil {
		_ = m.cmd.Wait()
		if ws, ok := m.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			return statusFromWait(ws)
		}
		return exitStatus{}
	}
	// Adopted: waitid works only if it happens to be our child (a test
	// that restarts the backend in one process); otherwise its parent
	// reaps it, and until then /proc still says how it ended.
	var info unix.Siginfo
	var werr error
	if rc, err := m.pidf.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
		})
		if werr == nil {
			if st, pid := statusFromSiginfo(&info); pid != 0 {
				return st
			}
		}
	}
	if pi, err := readProc(m.pid); err == nil && pi.startTicks == m.ticks && pi.dead() && pi.waitStatus >= 0 {
		return statusFromWait(syscall.WaitStatus(pi.waitStatus))
	}
	return exitStatus{}
}
