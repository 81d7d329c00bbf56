package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// Starting one master: its command, runtime directory, log pipe and
// cgroups, then the wait for its first pong.

// command is the master's exec: the instance's php-fpm link, as the instance
// user with no supplementary groups, in a session of its own, with a clean
// environment, in the document root (entered as that user), stdin from
// /dev/null, through the sandbox (sandbox.go: a /proc that shows the
// instance only its own processes).
func (b *Backend) command(id procmgr.InstanceID, u procmgr.InstanceUser, out *os.File) *exec.Cmd {
	l := b.host.Layout
	link := l.FPMBinaryLink(id)
	return &exec.Cmd{
		// The panel's own binary as the sandbox, which drops to the
		// instance's user and execs the master. Its argv[0] is the link:
		// php-fpm re-executes argv[0] on a reload, so a changed PHP
		// version is picked up then. no_new_privs is set by the thread
		// that forks it (cgroups.startIn).
		Path:   "/proc/self/exe",
		Args:   sandboxArgs(u.UID, u.GID, l.PublicDir(id), []string{link, "--nodaemonize", "--fpm-config", l.FPMConfigPath(id)}),
		Env:    []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Stdout: out,
		Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{
			// A session of its own (and so a process group it leads): no
			// controlling terminal, so tenant code cannot open the
			// terminal the panel was started from (`make run`) and read or
			// type into root's shell.
			Setsid: true,
		},
	}
}

// ensureRuntimeDir makes the directory of the socket and pid file afresh
// before each start (no master runs then), owned by the instance user
// (php-fpm runs as that user and creates both) and open to its group, which
// holds the web server's user. Afresh, as systemd's RuntimeDirectory= is:
// nothing the tenant left there (a FIFO where the pid file goes would hang
// php-fpm's start) outlives a master.
func (b *Backend) ensureRuntimeDir(id procmgr.InstanceID, u procmgr.InstanceUser) error {
	dir := b.host.Layout.RuntimeDir(id)
	if err := os.MkdirAll(b.host.Layout.RuntimeRoot, 0o755); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	// Just made, in the root-owned runtime root: nothing else can be there.
	if err := os.Mkdir(dir, 0o750); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.Lchown(dir, u.UID, u.GID); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	return nil
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
