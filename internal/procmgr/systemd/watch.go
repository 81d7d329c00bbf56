package systemd

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// watch turns systemd's PropertiesChanged signals into events. The Unit
// interface's signal carries ActiveState and SubState; an event with those is
// published at once, and the instance is queued for a full re-read (MainPID,
// restarts, exit status) that the refresher publishes next.
func (b *Backend) watch() {
	defer b.done.Done()
	health := time.NewTicker(2 * time.Second)
	defer health.Stop()
	for {
		select {
		case <-b.stop:
			return
		case u := <-b.updates:
			id, ok := b.host.Layout.InstanceFromUnit(u.UnitName)
			if !ok {
				continue
			}
			b.mu.Lock()
			st, known := b.last[id]
			b.mu.Unlock()
			if known {
				if v, ok := u.Changed["ActiveState"]; ok {
					st.ActiveState, _ = v.Value().(string)
				}
				if v, ok := u.Changed["SubState"]; ok {
					st.SubState, _ = v.Value().(string)
				}
				st.State = mapState(st.ActiveState, st.SubState, "")
				if st.State != procmgr.StateRunning {
					// The old PID is gone or about to be.
					st.MainPID = 0
				}
				b.publishIfChanged(st)
			}
			b.markDirty(id)
		case err := <-b.errs:
			// The update channel overflowed: re-read everything.
			b.log.Warn("missed unit signals; resynchronising", "err", err)
			b.markAllDirty()
		case <-health.C:
			// A closed connection delivers no signals; reconnecting
			// subscribes again, and a full re-read covers the gap.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			b.conn.mu.Lock()
			lost := b.conn.c == nil || !b.conn.c.Connected()
			b.conn.mu.Unlock()
			if lost {
				if _, err := b.conn.get(ctx); err == nil {
					b.log.Info("reconnected to systemd")
					b.markAllDirty()
				} else {
					b.log.Warn("systemd connection lost", "err", err)
				}
			}
			cancel()
		}
	}
}

func (b *Backend) markDirty(id procmgr.InstanceID) {
	b.refreshMu.Lock()
	b.dirty[id] = true
	b.refreshMu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Backend) markAllDirty() {
	ids, err := b.host.ListConfigured()
	if err != nil {
		b.log.Warn("list instances", "err", err)
		return
	}
	for _, id := range ids {
		b.markDirty(id)
	}
}

func (b *Backend) refresher() {
	defer b.done.Done()
	for {
		select {
		case <-b.stop:
			return
		case <-b.kick:
		}
		b.refreshMu.Lock()
		ids := make([]procmgr.InstanceID, 0, len(b.dirty))
		for id := range b.dirty {
			ids = append(ids, id)
		}
		clear(b.dirty)
		b.refreshMu.Unlock()
		for _, id := range ids {
			if !b.host.ConfigExists(id) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := b.conn.get(ctx)
			if err == nil {
				_, err = b.refreshStatus(ctx, c, id)
			}
			cancel()
			if err != nil {
				b.logFor(id, "refresh").Warn("read status", "err", err)
			}
		}
	}
}

// cgroupMemory reads memory use where systemd cannot (a v1 memory
// controller beside a v2 hierarchy).
func cgroupMemory(cg string) uint64 {
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup", cg, "memory.current"),
		filepath.Join("/sys/fs/cgroup/memory", cg, "memory.usage_in_bytes"),
	} {
		if v, err := readUint(p); err == nil {
			return v
		}
	}
	return 0
}

// cgroupCPU reads CPU time where systemd reports [not set]: cpu.stat of the
// v2 hierarchy (pure v2, or the unified mount of a hybrid host).
func cgroupCPU(cg string) time.Duration {
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup", cg, "cpu.stat"),
		filepath.Join("/sys/fs/cgroup/unified", cg, "cpu.stat"),
	} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				return time.Duration(n) * time.Microsecond
			}
		}
	}
	if v, err := readUint(filepath.Join("/sys/fs/cgroup/cpuacct", cg, "cpuacct.usage")); err == nil {
		return time.Duration(v)
	}
	return 0
}

func readUint(p string) (uint64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}
