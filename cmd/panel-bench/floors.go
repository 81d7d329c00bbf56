package main

// Floors: for each figure, the same work done without the panel, measured
// in the same run, so that a figure is read as a ratio to what the machine
// can do at that moment (these machines are shared and their speed moves
// several-fold within an hour).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// reportRatio prints a figure beside its floor: p50s, the ratio, and the
// targets (a ratio, and the absolute one kept from before as a second
// column).
func (b *bench) reportRatio(name string, ds, floor []time.Duration, floorName string, ratioTarget float64, absTarget time.Duration) {
	p50, f50 := pct(ds, 0.5), pct(floor, 0.5)
	ratio := float64(p50) / float64(f50)
	verdict := "OK"
	if ratio > ratioTarget {
		verdict, b.failed = "MISSED", true
	}
	abs := "ok"
	if absTarget > 0 && p50 > absTarget {
		abs = "over"
	}
	b.note(fmt.Sprintf("%-58s p50 %10s  p90 %10s  (n=%d)  floor %10s  ratio %5.2f  target <= %.1fx  %s  (absolute target %s: %s)",
		name, ms(p50), ms(pct(ds, 0.9)), len(ds), ms(f50), ratio, ratioTarget, verdict, ms(absTarget), abs))
	b.note(fmt.Sprintf("  floor: %s", floorName))
}

// unitNames are the systemd units of ids.
func (b *bench) unitNames(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = b.layout.UnitName(procmgr.InstanceID(id))
	}
	return out
}

// waitAllReady waits until every instance's pool answers a ping, for d at
// most.
func (b *bench) waitAllReady(ids []string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return parallel(ids, 16, func(id string) error {
		if err := procmgr.WaitReady(ctx, b.layout.SocketPath(procmgr.InstanceID(id))); err != nil {
			return fmt.Errorf("%s not answering: %w", id, err)
		}
		return nil
	})
}

// startFloor starts ids without the panel (which must be stopped, and the
// instances not running) until every pool answers, and returns how long it
// took: `systemctl start` of their units in one command, or php-fpm run
// directly, 16 at a time as the supervisor's batch does. stop ends them.
func (b *bench) startFloor(ids []string) (time.Duration, func() error, error) {
	t0 := time.Now()
	if b.backend == "systemd" {
		units := b.unitNames(ids)
		if out, err := exec.Command("systemctl", append([]string{"start"}, units...)...).CombinedOutput(); err != nil {
			return 0, nil, fmt.Errorf("systemctl start: %v %s", err, out)
		}
		if err := b.waitAllReady(ids, 2*time.Minute); err != nil {
			return 0, nil, err
		}
		took := time.Since(t0)
		return took, func() error {
			if out, err := exec.Command("systemctl", append([]string{"stop"}, units...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("systemctl stop: %v %s", err, out)
			}
			return nil
		}, nil
	}
	masters := make([]*procmgrtest.DirectMaster, len(ids))
	idx := map[string]int{}
	for i, id := range ids {
		idx[id] = i
	}
	if err := parallel(ids, 16, func(id string) error {
		m, err := procmgrtest.StartMasterDirectly(b.layout, procmgr.InstanceID(id))
		if err != nil {
			return err
		}
		masters[idx[id]] = m
		return procmgr.WaitReady(context.Background(), b.layout.SocketPath(procmgr.InstanceID(id)))
	}); err != nil {
		return 0, nil, err
	}
	took := time.Since(t0)
	return took, func() error {
		for i, m := range masters {
			if m != nil {
				m.Stop()
			}
			os.RemoveAll(b.layout.RuntimeDir(procmgr.InstanceID(ids[i])))
		}
		return nil
	}, nil
}

// createFloor is the floor of create until ping, n times: making an
// account with the system's tools, then startFloor of an instance made
// before (its files and config are there: writing them is the panel's
// own small part).
func (b *bench) createFloor(id string, n int) ([]time.Duration, error) {
	var ds []time.Duration
	for i := range n {
		acct, err := procmgrtest.TimeAccountCreation(b.layout.WebUser, fmt.Sprintf("ikbfloor%d", i))
		if err != nil {
			return nil, err
		}
		took, stop, err := b.startFloor([]string{id})
		if err != nil {
			return nil, err
		}
		ds = append(ds, acct+took)
		if err := stop(); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// waitidFloor is the floor of the supervisor's kill -9 to event: a child
// killed with SIGKILL until its parent's wait returns.
func waitidFloor(n int) ([]time.Duration, error) {
	var ds []time.Duration
	for range n {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}

// apiFloor is n calls of the cheapest request through the same socket.
func (b *bench) apiFloor(n int) []time.Duration {
	var ds []time.Duration
	for range n {
		t0 := time.Now()
		if err := b.api("GET", "/healthz", nil, nil); err != nil {
			continue
		}
		ds = append(ds, time.Since(t0))
	}
	return ds
}

// running counts the php-fpm masters of this bench's layout.
func (b *bench) running() int {
	return len(b.masterPIDs())
}

// masterPIDs lists the php-fpm masters running a config of this layout.
func (b *bench) masterPIDs() []int { return procmgrtest.MasterPIDs(b.layout.ConfigRoot + "/") }
