package supervise

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// What the backend reports: statuses made from memory (and the cgroups'
// usage files), published to subscribers when they change.

// Status implements procmgr.Backend. It reads memory, plus the instance's
// cgroup usage files.
func (b *Backend) Status(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	if err := b.host.Provisioned(id); err != nil {
		return procmgr.Status{}, err
	}
	inst := b.instance(id)
	b.mu.Lock()
	running := inst.m != nil
	b.mu.Unlock()
	var u usage
	if running {
		u = b.cg.usage(id)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	inst.usage = u
	return b.statusLocked(inst), nil
}

// List implements procmgr.Backend. It reads memory only; usage figures are
// at most usageInterval old.
func (b *Backend) List(ctx context.Context) ([]procmgr.Status, error) {
	ids, err := b.host.ListConfigured()
	if err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	out := make([]procmgr.Status, 0, len(ids))
	for _, id := range ids {
		out = append(out, b.snapshot(b.instance(id)))
	}
	return out, nil
}

// Subscribe implements procmgr.Backend.
func (b *Backend) Subscribe(ctx context.Context) (<-chan procmgr.Event, error) {
	return b.feed.Subscribe(ctx)
}

// snapshot is the instance's status from memory.
func (b *Backend) snapshot(inst *instance) procmgr.Status {
	b.mu.Lock()
	running := inst.m != nil
	b.mu.Unlock()
	// Fresh usage figures (three small cgroup files), so that the status an
	// action returns shows the new master's, not zeros or the last one's.
	var u usage
	if running {
		u = b.cg.usage(inst.id)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if running && inst.m != nil {
		inst.usage = u
	}
	return b.statusLocked(inst)
}

func (b *Backend) statusLocked(inst *instance) procmgr.Status {
	st := procmgr.Status{
		ID:          inst.id,
		State:       inst.state,
		Restarts:    inst.restarts,
		Since:       inst.since,
		Limits:      inst.limits,
		Backend:     b.Name(),
		MemoryBytes: inst.usage.memory,
		CPUUsage:    inst.usage.cpu,
		Tasks:       inst.usage.tasks,
		Notes:       slices.Clone(inst.notes),
	}
	if inst.m != nil {
		st.MainPID = inst.m.pid
	}
	if inst.lastExit != nil {
		ex := *inst.lastExit
		st.LastExit = &ex
	}
	return b.feed.Stamp(st)
}

// setStateLocked enters state s.
func (b *Backend) setStateLocked(inst *instance, s procmgr.State) {
	if inst.state != s {
		inst.state = s
		inst.since = time.Now()
	}
}

// publishLocked publishes the instance's status unless the feed says it
// did not change. Publishing under b.mu keeps events in the order of the
// changes; the feed never blocks.
func (b *Backend) publishLocked(inst *instance) {
	if inst.removed {
		return
	}
	b.feed.Publish(b.statusLocked(inst))
}

// usageLoop reads memory, CPU and tasks of running instances from their
// cgroups and publishes the figures that changed, as the systemd backend
// does.
func (b *Backend) usageLoop() {
	defer b.wg.Done()
	t := time.NewTicker(usageInterval)
	defer t.Stop()
	for {
		select {
		case <-b.life.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		var running []*instance
		for _, in := range b.inst {
			if in.m != nil {
				running = append(running, in)
			}
		}
		b.mu.Unlock()
		for _, in := range running {
			u := b.cg.usage(in.id)
			oom := b.cg.oomKills(in.id)
			b.mu.Lock()
			in.usage = u
			if in.m != nil {
				// A worker OOM-killed before now is not the master's
				// death: see exitInfo.
				in.m.oomBase = oom
			}
			b.publishLocked(in)
			b.mu.Unlock()
		}
	}
}
