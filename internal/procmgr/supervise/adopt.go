package supervise

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// Surviving the panel. Masters are not killed when the panel exits (no
// Pdeathsig, their own process groups), so instances keep serving while it
// restarts. The new panel reads each instance's state file and adopts the
// recorded master if it is still that very process, or starts the instance
// again if it should run but its master died meanwhile.

// recover adopts or restarts every configured instance with a state file.
func (b *Backend) recover(ctx context.Context) error {
	ids, err := b.host.ListConfigured()
	if err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	var toStart []*instance
	for _, id := range ids {
		log := b.logFor(id, "adopt")
		inst := b.instance(id)
		// Drain what the masters wrote while no panel read.
		inst.sink.openExisting()
		sf, ok, err := b.readState(id)
		if err != nil {
			log.Warn("unreadable state file; treating the instance as stopped", "err", err)
			continue
		}
		if !ok {
			continue
		}
		notes, _ := b.cg.ensure(id)
		if sf.Limits != (procmgr.Limits{}) {
			// Cgroups may be new (the host rebooted but kept the state
			// directory); idempotent otherwise.
			if err := b.cg.apply(id, sf.Limits); err != nil {
				log.Warn("apply recorded limits", "err", err)
			}
		}
		b.mu.Lock()
		inst.limits, inst.restarts, inst.notes = sf.Limits, sf.Restarts, notes
		if sf.Failed {
			b.setStateLocked(inst, procmgr.StateFailed)
		}
		b.mu.Unlock()
		if sf.PID > 0 {
			why := b.adopt(inst, sf)
			if why == "" {
				continue
			}
			log.Info("recorded master not adopted", "pid", sf.PID, "reason", why)
			b.clearLeftovers(inst, sf.PID)
		}
		if sf.Running {
			toStart = append(toStart, inst)
		}
	}
	sem := make(chan struct{}, startManyParallel)
	var wg sync.WaitGroup
	for _, inst := range toStart {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			unlock, err := b.lock(ctx, inst.id)
			if err != nil {
				return
			}
			defer unlock()
			inst.sink.add("The master died while no panel was watching; starting it again.")
			// Counted as an automatic restart: it replaces a master that
			// ended without being asked to.
			if err := b.startMaster(ctx, inst, true); err != nil {
				b.logFor(inst.id, "adopt").Warn("start again", "err", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

// adopt takes over the recorded master if it is still the same process, ours
// and this instance's php-fpm master. It returns "" when adopted, else why
// not.
func (b *Backend) adopt(inst *instance, sf savedState) string {
	id, pid := inst.id, sf.PID
	u, err := b.host.LookupUser(id)
	if err != nil {
		return "no instance user: " + err.Error()
	}
	pi, err := readProc(pid)
	if err != nil {
		return "the process is gone"
	}
	if pi.startTicks != sf.StartTicks {
		return fmt.Sprintf("PID %d now belongs to another process (started at tick %d, the master at %d)", pid, pi.startTicks, sf.StartTicks)
	}
	if pi.dead() {
		// A master of an earlier backend in this same process (tests
		// restart the backend in-process) is our child: reap it.
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		return "the master has exited"
	}
	if pi.pgrp != pid {
		return "the process does not lead its own process group"
	}
	if r, e, err := procUIDs(pid); err != nil || r != u.UID || e != u.UID {
		return fmt.Sprintf("the process does not run as %s", u.Name)
	}
	cl := procCmdline(pid)
	if !strings.HasPrefix(cl, "php-fpm: master process") || !strings.Contains(cl, "("+b.host.Layout.FPMConfigPath(id)+")") {
		return fmt.Sprintf("the process is %q, not this instance's php-fpm master", cl)
	}
	pfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return "the process is gone"
	}
	// The pidfd pins one process; make sure it is the one just checked.
	if pi2, err := readProc(pid); err != nil || pi2.startTicks != sf.StartTicks || pi2.dead() {
		unix.Close(pfd)
		return "the master has exited"
	}
	m := &master{
		pid:    pid,
		uid:    u.UID,
		ticks:  sf.StartTicks,
		pidf:   os.NewFile(uintptr(pfd), "pidfd"),
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
	}
	close(m.ready)
	m.oomBase = b.cg.oomKills(id)
	b.mu.Lock()
	inst.m = m
	b.setStateLocked(inst, procmgr.StateRunning)
	inst.since = startTime(sf.StartTicks)
	b.publishLocked(inst)
	b.wg.Add(1)
	b.mu.Unlock()
	go b.watch(inst, m)
	inst.sink.add(fmt.Sprintf("Adopted the running php-fpm master of %s, pid %d.", id, pid))
	b.logFor(id, "adopt").Info("adopted running master", "pid", pid)
	return ""
}

// clearLeftovers kills what is left of a master that died while no panel
// watched: its workers, which would keep answering on the socket. Only the
// instance's cgroup and php-fpm processes of the old group that run as the
// instance user are touched, never a process that merely reuses the PID.
func (b *Backend) clearLeftovers(inst *instance, pgid int) {
	b.cg.killAll(inst.id)
	u, err := b.host.LookupUser(inst.id)
	if err != nil {
		return
	}
	for _, p := range groupMembers(pgid, u.UID) {
		if strings.HasPrefix(procCmdline(p), "php-fpm") {
			_ = unix.Kill(p, unix.SIGKILL)
		}
	}
	b.waitGone(inst.id, 0, false)
}

// bootTime is when the machine booted, from /proc/stat; zero if unknown.
func bootTime() time.Time {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}

// userHZ is the unit of /proc/<pid>/stat times: 100 on every Linux ABI.
const userHZ = 100

// startTime is when a process with these start ticks started.
func startTime(ticks uint64) time.Time {
	bt := bootTime()
	if bt.IsZero() {
		return time.Now()
	}
	return bt.Add(time.Duration(ticks) * time.Second / userHZ)
}
