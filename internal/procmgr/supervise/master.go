package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
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

// command is the master's exec: the instance's php-fpm link, as the instance
// user with no supplementary groups, in a process group of its own, with a
// clean environment, in the document root, stdin from /dev/null.
func (b *Backend) command(id procmgr.InstanceID, u procmgr.InstanceUser, out *os.File) *exec.Cmd {
	l := b.host.Layout
	link := l.FPMBinaryLink(id)
	return &exec.Cmd{
		// argv[0] is the link: php-fpm re-executes argv[0] on a reload, so
		// a changed PHP version is picked up then. no_new_privs is set by
		// the thread that forks it (cgroups.startIn).
		Path:   link,
		Args:   []string{link, "--nodaemonize", "--fpm-config", l.FPMConfigPath(id)},
		Env:    []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Dir:    l.PublicDir(id),
		Stdout: out,
		Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{
			// A session of its own (and so a process group it leads): no
			// controlling terminal, so tenant code cannot open the
			// terminal the panel was started from (`make run`) and read or
			// type into root's shell.
			Setsid:     true,
			Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}},
		},
	}
}

// personStart starts the master because a person asked (Start, Restart,
// Provision): it cancels a pending automatic restart and resets the start
// limit and the restart counter, as systemctl start does after reset-failed.
// A running master is left alone. The instance lock is held.
func (b *Backend) personStart(ctx context.Context, inst *instance) error {
	b.mu.Lock()
	m := inst.m
	if m == nil {
		inst.tok++
		inst.starts = nil
		inst.restarts = 0
	}
	b.mu.Unlock()
	if m != nil {
		return b.awaitMaster(ctx, inst, m)
	}
	// Workers of a master that just crashed may still be dying.
	b.waitGone(inst.id, 0, false)
	return b.startMaster(ctx, inst, false)
}

// awaitMaster waits until a master that is starting answers, or ends.
func (b *Backend) awaitMaster(ctx context.Context, inst *instance, m *master) error {
	select {
	case <-m.ready:
		return nil
	case <-m.exited:
		return b.exitedError(inst, "start")
	case <-ctx.Done():
		return fmt.Errorf("supervise: start %s: %w", inst.id, ctx.Err())
	case <-b.life.Done():
		// Closed: no watcher will report this master any more.
		return fmt.Errorf("supervise: start %s: backend closed", inst.id)
	}
}

func (b *Backend) exitedError(inst *instance, verb string) error {
	b.mu.Lock()
	ex := inst.lastExit
	b.mu.Unlock()
	why := "unknown"
	if ex != nil {
		why = describeExit(*ex)
	}
	when := "before it answered a ping"
	if verb == "reload" {
		when = "during the reload"
	}
	return fmt.Errorf("supervise: %s %s: the master exited %s (%s); see its logs", verb, inst.id, when, why)
}

// startMaster starts a master and waits until its pool answers a ping. auto
// marks an automatic restart. The instance lock is held and no master runs.
func (b *Backend) startMaster(ctx context.Context, inst *instance, auto bool) error {
	m, err := b.spawn(inst, auto)
	if err != nil {
		return err
	}
	return b.awaitMaster(ctx, inst, m)
}

// spawn execs a master and starts watching it. A failure to get as far as a
// running process counts as a failed start, which the restart policy
// handles like a crash (systemd does the same with exec failures).
func (b *Backend) spawn(inst *instance, auto bool) (*master, error) {
	id := inst.id
	log := b.logFor(id, "start")
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("supervise: start %s: backend closed", id)
	}
	now := time.Now()
	inst.starts = append(pruneStarts(inst.starts, now), now)
	if auto {
		inst.restarts++
	}
	b.setStateLocked(inst, procmgr.StateStarting)
	b.publishLocked(inst)
	b.mu.Unlock()

	// failed records a start that never got a process. systemd reports
	// the same: exit code 203 (EXEC) or result "resources".
	failed := func(ex procmgr.ExitInfo, line string, err error) (*master, error) {
		b.mu.Lock()
		inst.lastExit = &ex
		var msgs []string
		if !b.closed && !inst.removed {
			msgs = b.failedLocked(inst)
		}
		b.publishLocked(inst)
		b.mu.Unlock()
		inst.sink.add(append([]string{line}, msgs...)...)
		b.saveState(inst)
		log.Warn("start failed", "err", err)
		return nil, err
	}
	u, err := b.host.LookupUser(id)
	if err != nil {
		return failed(procmgr.ExitInfo{Result: "resources"}, "Failed to look up the instance user.", fmt.Errorf("supervise: start %s: %w", id, err))
	}
	if err := b.ensureRuntimeDir(id, u); err != nil {
		return failed(procmgr.ExitInfo{Result: "resources"}, "Failed to make the runtime directory.", fmt.Errorf("supervise: start %s: %w", id, err))
	}
	if err := inst.sink.openReader(u.UID, u.GID); err != nil {
		return failed(procmgr.ExitInfo{Result: "resources"}, "Failed to set up the log pipe.", err)
	}
	out, err := inst.sink.writer()
	if err != nil {
		return failed(procmgr.ExitInfo{Result: "resources"}, "Failed to set up the log pipe.", err)
	}
	defer out.Close()

	cmd := b.command(id, u, out)
	tracked := false
	if dir := b.cg.trackDir(id); dir != "" {
		// Started right inside its cgroup (clone3 CLONE_INTO_CGROUP),
		// so not even an early fork escapes it.
		if fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			defer unix.Close(fd)
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = fd
			tracked = true
		}
	}
	inst.sink.add(fmt.Sprintf("Starting php-fpm master of %s...", id))
	placed, err := b.cg.startIn(id, cmd)
	if err != nil && tracked {
		// A kernel or hierarchy that refuses CLONE_INTO_CGROUP: start
		// plainly and move the master in afterwards.
		log.Debug("start in cgroup failed; retrying without", "err", err)
		cmd, tracked = b.command(id, u, out), false
		placed, err = b.cg.startIn(id, cmd)
	}
	if err != nil {
		return failed(procmgr.ExitInfo{Result: "exit-code", Code: 203},
			"Failed to execute "+b.host.Layout.FPMBinaryLink(id)+": "+errText(err),
			fmt.Errorf("supervise: start %s: %w", id, err))
	}
	pid := cmd.Process.Pid
	pfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		// Not reaped yet, so the PID is still this child's.
		_ = unix.Kill(-pid, unix.SIGKILL)
		_ = cmd.Wait()
		return failed(procmgr.ExitInfo{Result: "resources"}, "Failed to watch the master.", fmt.Errorf("supervise: start %s: pidfd: %w", id, err))
	}
	m := &master{
		pid:    pid,
		uid:    u.UID,
		cmd:    cmd,
		pidf:   os.NewFile(uintptr(pfd), "pidfd"),
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
	}
	b.joinAll(inst, m, placed, tracked)
	if pi, err := readProc(pid); err == nil {
		m.ticks = pi.startTicks
	}
	m.oomBase = b.cg.oomKills(id)

	b.mu.Lock()
	if b.closed {
		// Close ran meanwhile and will not wait for this master: do not
		// leave one behind that no state file names.
		b.mu.Unlock()
		m.killGroup()
		m.reap()
		m.pidf.Close()
		return nil, fmt.Errorf("supervise: start %s: backend closed", id)
	}
	inst.m = m
	b.publishLocked(inst)
	b.wg.Add(2)
	b.mu.Unlock()
	go b.watch(inst, m)
	go b.awaitReady(inst, m)
	inst.sink.add(fmt.Sprintf("Started php-fpm master of %s, pid %d.", id, pid))
	b.saveState(inst)
	log.Info("master started", "pid", pid, "automatic", auto)
	return m, nil
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// joinAll moves a master that was not born in all of the instance's cgroups
// into them: placed says it was born in its v1 cgroups (see startIn), tracked
// in its v2 one. Writing a PID to cgroup.procs happens after the exec, so
// php-fpm may have forked workers in that tiny window; they are swept in
// right after, from the list of the tracking cgroup (which nothing escapes)
// or, without one, from the master's process group. A worker forked later
// inherits the master's cgroups.
func (b *Backend) joinAll(inst *instance, m *master, placed, tracked bool) {
	v1 := !placed && len(b.cg.v1Dirs(inst.id)) > 0
	track := !tracked && b.cg.trackDir(inst.id) != ""
	if !v1 && !track {
		return
	}
	b.cg.join(inst.id, m.pid, v1, track)
	var others []int
	if tracked {
		others, _ = b.cg.procs(inst.id)
	} else {
		others = groupMembers(m.pid, m.uid)
	}
	for _, p := range others {
		if p != m.pid {
			b.cg.join(inst.id, p, v1, track)
		}
	}
}

// awaitReady pings the new master's pool until it answers, then marks the
// instance running. A master that does not answer within readyTimeout is
// killed, like a systemd unit whose start timed out; its exit then goes
// through the restart policy.
func (b *Backend) awaitReady(inst *instance, m *master) {
	defer b.wg.Done()
	ctx, cancel := context.WithTimeout(b.life, readyTimeout)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-m.exited:
			cancel()
		case <-stop:
		}
	}()
	err := procmgr.WaitInstanceReady(ctx, b.host.Layout.SocketPath(inst.id), m.pid)
	if err == nil {
		b.mu.Lock()
		if inst.m == m && inst.state == procmgr.StateStarting {
			b.setStateLocked(inst, procmgr.StateRunning)
			b.publishLocked(inst)
		}
		b.mu.Unlock()
		close(m.ready)
		b.saveState(inst)
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	if b.life.Err() != nil {
		return
	}
	b.logFor(inst.id, "start").Warn("master did not answer in time; killing it", "pid", m.pid, "err", err)
	inst.sink.add(fmt.Sprintf("Start operation timed out after %v. Terminating.", readyTimeout))
	b.mu.Lock()
	m.timedOut = true
	b.mu.Unlock()
	m.killGroup()
	_ = m.signal(syscall.SIGKILL)
}

// watch waits for the master's exit (kill -9 to event: one epoll wake-up,
// one waitid, one publish), kills what is left of its process group and
// cgroup, reaps it and applies the restart policy.
func (b *Backend) watch(inst *instance, m *master) {
	defer b.wg.Done()
	defer m.pidf.Close()
	if err := m.waitExit(); err != nil {
		// The backend is closing: the master lives on for the next panel.
		return
	}
	b.cg.killAll(inst.id)
	st := m.reap()
	oom := b.cg.oomKills(inst.id)
	b.handleExit(inst, m, st, oom)
}

// handleExit records how the master ended and decides what follows.
func (b *Backend) handleExit(inst *instance, m *master, st exitStatus, oom uint64) {
	b.mu.Lock()
	if inst.m == m {
		inst.m = nil
	}
	ex := exitInfo(st, m.timedOut, st.known && !st.exited && st.signal == syscall.SIGKILL && oom > m.oomBase)
	if m.expected && !m.timedOut && st.known && !st.exited && st.signal == syscall.SIGQUIT {
		// Killed by the stop signal itself (it arrived before php-fpm
		// had its handler in place): a clean stop, as systemd counts a
		// death by its kill signal.
		ex.Result = "success"
	}
	inst.lastExit = &ex
	msgs := []string{exitLine(st, m.pid)}
	switch {
	case b.closed || inst.removed:
	case m.expected:
		// Stop, Restart or Deprovision asked for it and sets the state.
	case ex.Result == "success":
		// Restart=on-failure: a clean exit (say, after a person's
		// SIGTERM) leaves the instance stopped.
		b.setStateLocked(inst, procmgr.StateStopped)
		msgs = append(msgs, "Deactivated successfully.")
	default:
		msgs = append(msgs, b.failedLocked(inst)...)
	}
	b.publishLocked(inst)
	b.mu.Unlock()
	close(m.exited)
	inst.sink.add(msgs...)
	b.saveState(inst)
	b.logFor(inst.id, "exit").Info("master exited", "pid", m.pid, "result", ex.Result, "code", ex.Code, "signal", ex.Signal, "expected", m.expected)
}

// failedLocked applies the restart policy after a failed start or a crash:
// restart unless the start limit is hit, then failed. It returns the lines
// for the instance's log.
func (b *Backend) failedLocked(inst *instance) []string {
	now := time.Now()
	inst.starts = pruneStarts(inst.starts, now)
	if len(inst.starts) >= startLimitBurst {
		ex := procmgr.ExitInfo{Result: "start-limit-hit"}
		if inst.lastExit != nil {
			ex.Code, ex.Signal = inst.lastExit.Code, inst.lastExit.Signal
		}
		inst.lastExit = &ex
		b.setStateLocked(inst, procmgr.StateFailed)
		return []string{"Start request repeated too quickly.", "Failed with result 'start-limit-hit'."}
	}
	delay := restartDelay(len(inst.starts))
	b.setStateLocked(inst, procmgr.StateCrashLooping)
	b.wg.Add(1)
	go b.autoRestart(inst, inst.tok, delay)
	return []string{fmt.Sprintf("Scheduled restart in %v, restart counter is at %d.", delay, inst.restarts+1)}
}

// restartDelay is the pause before an automatic restart, given the starts
// within the start-limit interval. The first restart after a calm period
// (only the start that crashed in the window) is immediate, so a single
// crash costs the site as little as possible; the ones after it wait
// restartDelayAfterFirst, the systemd unit's RestartSec, so that a crash loop reaches the
// start limit at the same pace as under systemd.
func restartDelay(starts int) time.Duration {
	if starts <= 1 {
		return 0
	}
	return restartDelayAfterFirst
}

func pruneStarts(starts []time.Time, now time.Time) []time.Time {
	out := starts[:0]
	for _, t := range starts {
		if now.Sub(t) < startLimitInterval {
			out = append(out, t)
		}
	}
	return out
}

// autoRestart restarts a crashed master after delay, unless a person acted
// meanwhile (tok changed) or the backend closed.
func (b *Backend) autoRestart(inst *instance, tok uint64, delay time.Duration) {
	defer b.wg.Done()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-b.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	unlock, err := b.locks.Lock(b.life, inst.id)
	if err != nil {
		return
	}
	defer unlock()
	b.mu.Lock()
	stale := inst.tok != tok || inst.m != nil || inst.removed || b.closed
	b.mu.Unlock()
	if stale {
		return
	}
	b.waitGone(inst.id, 0, false)
	if err := b.startMaster(b.life, inst, true); err != nil {
		b.logFor(inst.id, "restart").Warn("automatic restart failed", "err", err)
	}
}

// waitGone waits (up to goneTimeout) until the instance's cgroup is empty,
// killing what is still in it. It runs only while no master of the
// instance is meant to run.
//
// Without a cgroup only the process group pgid is known, already sent
// SIGKILL; a process with SIGKILL pending never runs user code again, so a
// restart need not wait. thorough waits for the group anyway (zombies
// included, which the host's init reaps in its own time), for the removal of
// the instance's user, which userdel refuses while any process has its uid.
func (b *Backend) waitGone(id procmgr.InstanceID, pgid int, thorough bool) {
	deadline := time.Now().Add(goneTimeout)
	for time.Now().Before(deadline) {
		if pids, ok := b.cg.procs(id); ok {
			if len(pids) == 0 {
				return
			}
			b.cg.killAll(id)
		} else if !thorough || pgid <= 0 || unix.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.logFor(id, "stop").Warn("processes of the instance still there after being killed", "after", goneTimeout)
}

// stopMaster stops the master gracefully (SIGQUIT: php-fpm lets workers
// finish), kills the process group after stopTimeout or when ctx ends, and
// removes the runtime directory (socket, pid file). A pending automatic
// restart is cancelled. Stopping a stopped instance changes nothing but its
// state word. thorough is for a removal: see waitGone. The instance lock is
// held.
func (b *Backend) stopMaster(ctx context.Context, inst *instance, thorough bool) error {
	log := b.logFor(inst.id, "stop")
	b.mu.Lock()
	inst.tok++
	m := inst.m
	if m != nil {
		m.expected = true
		b.setStateLocked(inst, procmgr.StateStopping)
		b.publishLocked(inst)
	}
	b.mu.Unlock()
	if m != nil {
		inst.sink.add(fmt.Sprintf("Stopping php-fpm master of %s, pid %d...", inst.id, m.pid))
		if err := m.signal(syscall.SIGQUIT); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, os.ErrClosed) {
			log.Warn("SIGQUIT", "pid", m.pid, "err", err)
		}
		t := time.NewTimer(stopTimeout)
		// php-fpm 8.2 loses a signal that arrives while it re-executes
		// itself for a reload (the first millisecond or two after
		// SIGUSR2; measured here: the master then runs on). Repeating
		// SIGQUIT is harmless: a master already finishing ignores it.
		again := time.NewTicker(quitRepeat)
	wait:
		for {
			select {
			case <-m.exited:
				break wait
			case <-again.C:
				_ = m.signal(syscall.SIGQUIT)
			case <-t.C:
				inst.sink.add(fmt.Sprintf("Stop timed out after %v. Killing.", stopTimeout))
				b.kill(m)
				break wait
			case <-ctx.Done():
				inst.sink.add("Stop interrupted. Killing.")
				b.kill(m)
				break wait
			}
		}
		again.Stop()
		t.Stop()
		select {
		case <-m.exited:
		case <-time.After(goneTimeout):
			return fmt.Errorf("supervise: stop %s: master %d still there after SIGKILL", inst.id, m.pid)
		}
		b.waitGone(inst.id, m.pid, thorough)
	}
	if err := os.RemoveAll(b.host.Layout.RuntimeDir(inst.id)); err != nil {
		return fmt.Errorf("supervise: stop %s: %w", inst.id, err)
	}
	b.mu.Lock()
	if inst.m == nil {
		b.setStateLocked(inst, procmgr.StateStopped)
	}
	b.publishLocked(inst)
	b.mu.Unlock()
	if m != nil {
		inst.sink.add(fmt.Sprintf("Stopped php-fpm master of %s.", inst.id))
		log.Info("master stopped", "pid", m.pid)
	}
	b.saveState(inst)
	return nil
}

func (b *Backend) kill(m *master) {
	b.mu.Lock()
	m.timedOut = true
	b.mu.Unlock()
	m.killGroup()
	_ = m.signal(syscall.SIGKILL)
}

// reloadMaster asks the master to reload (SIGUSR2: php-fpm lets its workers
// finish, then re-executes itself with the same PID) and waits until the
// re-executed master has written its pid file, the old workers are gone and
// the new pool answers. Before that a ping may still be answered under the
// old config, and a signal sent during the re-exec would be lost (see
// stopMaster); waiting for the pid file keeps two reloads in a row from
// losing the second.
func (b *Backend) reloadMaster(ctx context.Context, inst *instance, m *master) error {
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	go func() {
		select {
		case <-m.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	old := childrenOf(m.pid)
	pidFile := b.host.Layout.PIDPath(inst.id)
	var written time.Time
	if fi, err := os.Stat(pidFile); err == nil {
		written = fi.ModTime()
	}
	b.mu.Lock()
	if inst.m == m {
		b.setStateLocked(inst, procmgr.StateReloading)
		b.publishLocked(inst)
	}
	b.mu.Unlock()
	inst.sink.add(fmt.Sprintf("Reloading php-fpm master of %s, pid %d...", inst.id, m.pid))
	err := m.signal(syscall.SIGUSR2)
	if err == nil {
		err = procmgr.WaitFileRewritten(ctx, pidFile, written)
	}
	if err == nil {
		err = procmgr.WaitProcessesGone(ctx, old)
	}
	if err == nil {
		err = procmgr.WaitInstanceReady(ctx, b.host.Layout.SocketPath(inst.id), m.pid)
	}
	select {
	case <-m.exited:
		return b.exitedError(inst, "reload")
	default:
	}
	// The master lives either way: it is running, under the old config
	// if the reload did not take.
	b.mu.Lock()
	if inst.m == m {
		b.setStateLocked(inst, procmgr.StateRunning)
		b.publishLocked(inst)
	}
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("supervise: reload %s: %w", inst.id, err)
	}
	inst.sink.add(fmt.Sprintf("Reloaded php-fpm master of %s.", inst.id))
	return nil
}

// exitInfo names how the master ended, in systemd's words. A SIGKILL while
// the cgroup's OOM kill count went up is taken for the OOM killer's.
func exitInfo(st exitStatus, timedOut, oom bool) procmgr.ExitInfo {
	var ex procmgr.ExitInfo
	switch {
	case !st.known:
		ex.Result = "unknown"
	case st.exited:
		ex.Code = st.code
		ex.Result = "exit-code"
		if st.code == 0 {
			ex.Result = "success"
		}
	default:
		ex.Signal = signalName(st.signal)
		switch {
		case st.core:
			ex.Result = "core-dump"
		case oom:
			ex.Result = "oom-kill"
		default:
			ex.Result = "signal"
		}
	}
	if timedOut {
		ex.Result = "timeout"
	}
	return ex
}

// exitLine is the log line of an exit, as systemd words it.
func exitLine(st exitStatus, pid int) string {
	switch {
	case !st.known:
		return fmt.Sprintf("Main process %d exited, status unknown (it was not started by this panel).", pid)
	case st.exited:
		if st.code == 0 {
			return fmt.Sprintf("Main process %d exited, code=exited, status=0/SUCCESS", pid)
		}
		return fmt.Sprintf("Main process %d exited, code=exited, status=%d/FAILURE", pid, st.code)
	case st.core:
		return fmt.Sprintf("Main process %d exited, code=dumped, status=%d/%s", pid, int(st.signal), signalName(st.signal))
	}
	return fmt.Sprintf("Main process %d exited, code=killed, status=%d/%s", pid, int(st.signal), signalName(st.signal))
}

func describeExit(ex procmgr.ExitInfo) string {
	var parts []string
	if ex.Signal != "" {
		parts = append(parts, "killed by signal "+ex.Signal)
	} else if ex.Result != "success" && ex.Result != "unknown" {
		parts = append(parts, fmt.Sprintf("exit code %d", ex.Code))
	}
	parts = append(parts, "result: "+ex.Result)
	return strings.Join(parts, ", ")
}
