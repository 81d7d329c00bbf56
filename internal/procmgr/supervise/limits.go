package supervise

import (
	"github.com/ikabud/panel/internal/procmgr"
)

// An instance's limits and its masters' membership of its cgroups (the
// cgroups themselves are cgroup.go's).

// applyLimits makes the instance's cgroups, writes the limits, reads them
// back, and records what was asked and what cannot be enforced here.
func (b *Backend) applyLimits(inst *instance, lim procmgr.Limits) error {
	notes, created := b.cg.ensure(inst.id)
	if err := b.cg.apply(inst.id, lim); err != nil {
		return err
	}
	b.mu.Lock()
	inst.limits = lim
	inst.notes = notes
	m := inst.m
	b.publishLocked(inst)
	b.mu.Unlock()
	if m != nil && created {
		// The cgroups are new (say, the master was adopted from a panel
		// that could not make them): move the running processes in.
		b.joinAll(inst, m, false, false)
	}
	b.saveState(inst)
	return nil
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
