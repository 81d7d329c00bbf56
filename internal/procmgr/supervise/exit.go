package supervise

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// A master's end: how it is seen, how it is named, and the restart policy
// that decides what follows (the systemd unit's, see docs/decisions.md).

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
	// Its workers and anything they started go with it before it is
	// reaped (the group id cannot be reused until then), on a stop as on
	// a crash, as systemd's KillMode=mixed ends the rest of the unit's
	// cgroup: a busy worker left behind would hold its request for ever on
	// an unlinked socket, and a setsid child no cgroup tracks would outlive
	// its instance. stopMaster waits for this (m.exited closes after it).
	// The tracking cgroup holds every process of the instance, a setsid
	// child too; only without one is the whole of /proc searched for the
	// instance's uid.
	m.killGroup()
	b.cg.killAll(inst.id)
	if _, tracked := b.cg.procs(inst.id); m.uid > 0 && !tracked {
		ctx, cancel := context.WithTimeout(context.Background(), goneTimeout)
		if err := procmgr.KillUID(ctx, m.uid); err != nil {
			b.logFor(inst.id, "exit").Warn("processes of the instance's user still there after its master ended", "err", err)
		}
		cancel()
	}
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
