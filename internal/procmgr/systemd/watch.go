package systemd

import (
	"context"
	"path/filepath"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/ikabud/panel/internal/procmgr"
)

// usageInterval is how often memory, CPU and task figures of running
// instances are read from their cgroups (files, not D-Bus) and published.
const usageInterval = 5 * time.Second

// watch turns systemd's PropertiesChanged signals into events. Both the Unit
// interface (ActiveState, SubState) and the Service interface (MainPID,
// NRestarts, ExecMain*, Result) emit their changes, so a signal is merged
// into the instance's cached properties and the new status is published at
// once, with no call back to systemd. An instance not yet cached is queued
// for a full read.
func (b *Backend) watch() {
	defer b.done.Done()
	health := time.NewTicker(2 * time.Second)
	defer health.Stop()
	usage := time.NewTicker(usageInterval)
	defer usage.Stop()
	signals, gen := b.conn.signals()
	for {
		select {
		case <-b.stop:
			return
		case sig, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			b.handleSignal(sig)
		case <-usage.C:
			b.refreshUsage()
		case <-health.C:
			// A closed connection delivers no signals; a new one (made
			// here, or by any call since) brings a new channel, and a
			// re-read of every instance covers the gap.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := b.conn.get(ctx)
			cancel()
			if err != nil {
				b.log.Warn("systemd connection lost", "err", err)
				continue
			}
			if ch, g := b.conn.signals(); g != gen {
				b.log.Info("reconnected to systemd")
				signals, gen = ch, g
				b.markAllDirty()
			}
		}
	}
}

func (b *Backend) handleSignal(sig *godbus.Signal) {
	if sig.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" || len(sig.Body) < 3 {
		return
	}
	if !b.conn.fromSystemd(sig.Sender) {
		return
	}
	iface, _ := sig.Body[0].(string)
	if iface != "org.freedesktop.systemd1.Unit" && iface != "org.freedesktop.systemd1.Service" {
		return
	}
	unit, ok := unitFromPath(sig.Path)
	if !ok {
		return
	}
	id, ok := b.host.Layout.InstanceFromUnit(unit)
	if !ok {
		return
	}
	changed, _ := sig.Body[1].(map[string]godbus.Variant)
	invalidated, _ := sig.Body[2].([]string)
	b.mu.Lock()
	props, cached := b.props[id]
	if !cached {
		b.mu.Unlock()
		b.markDirty(id)
		return
	}
	for k, v := range changed {
		if statusProps[k] {
			props[k] = v.Value()
		}
	}
	st := b.statusLocked(id, props)
	b.mu.Unlock()
	b.feed.Publish(st)
	for _, k := range invalidated {
		if statusProps[k] {
			b.markDirty(id)
			break
		}
	}
}

// refreshUsage reads memory, CPU and tasks of every running instance from
// its cgroup and publishes what changed.
func (b *Backend) refreshUsage() {
	type item struct {
		id procmgr.InstanceID
		cg string
	}
	var items []item
	b.mu.Lock()
	for id, p := range b.props {
		if a, _ := p["ActiveState"].(string); a == "active" {
			if cg, _ := p["ControlGroup"].(string); cg != "" {
				items = append(items, item{id, cg})
			}
		}
	}
	b.mu.Unlock()
	for _, it := range items {
		mem, cpu, tasks := cgroupMemory(it.cg), cgroupCPU(it.cg), cgroupTasks(it.cg)
		b.mu.Lock()
		p, ok := b.props[it.id]
		if !ok {
			b.mu.Unlock()
			continue
		}
		p["MemoryCurrent"], p["CPUUsageNSec"], p["TasksCurrent"] = mem, uint64(cpu), tasks
		st := b.statusLocked(it.id, p)
		b.mu.Unlock()
		b.feed.Publish(st)
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
		for b.batches.Load() > 0 {
			select {
			case <-b.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
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
		if v, err := procmgr.ReadUintFile(p); err == nil {
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
		if d, ok := procmgr.ReadCPUStat(p); ok {
			return d
		}
	}
	if v, err := procmgr.ReadUintFile(filepath.Join("/sys/fs/cgroup/cpuacct", cg, "cpuacct.usage")); err == nil {
		return time.Duration(v)
	}
	return 0
}

// cgroupTasks reads the number of tasks of a cgroup (pids controller).
func cgroupTasks(cg string) uint64 {
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup", cg, "pids.current"),
		filepath.Join("/sys/fs/cgroup/pids", cg, "pids.current"),
	} {
		if v, err := procmgr.ReadUintFile(p); err == nil {
			return v
		}
	}
	return 0
}
