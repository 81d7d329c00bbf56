package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// Start, stop and reload of the master, as the actions in actions.go and
// the restart policy in exit.go use them. The instance lock is held.

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
