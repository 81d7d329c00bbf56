package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// The actions a person (or the panel's reconciler) asks for, one per
// procmgr.Backend method. Each takes the instance's action lock (Kill
// excepted) and returns once the instance is as asked.

// Provision implements procmgr.Backend.
func (b *Backend) Provision(ctx context.Context, spec procmgr.Spec) (st procmgr.Status, err error) {
	id := spec.ID
	unlock, err := b.lock(ctx, id)
	if err != nil {
		return procmgr.Status{}, err
	}
	defer unlock()
	log := b.logFor(id, "provision")
	inst := b.instance(id)

	prep, err := b.host.Prepare(ctx, spec, log)
	if err != nil {
		return procmgr.Status{}, fmt.Errorf("supervise: provision %s: %w", id, err)
	}
	// If a later step fails, undo what this attempt made.
	defer func() {
		if err != nil {
			prep.Undo(ctx, func(ctx context.Context) {
				if err := b.teardown(ctx, inst); err != nil {
					log.Error("rollback: remove service state", "err", err)
				}
			})
		}
	}()
	changed := prep.Changed
	if err := b.applyLimits(inst, spec.Limits); err != nil {
		return procmgr.Status{}, err
	}
	b.mu.Lock()
	m := inst.m
	b.mu.Unlock()
	switch {
	case m != nil && changed:
		log.Info("config changed; reloading")
		if err := b.awaitMaster(ctx, inst, m); err != nil {
			return procmgr.Status{}, err
		}
		err = b.reloadMaster(ctx, inst, m)
	case m != nil:
		// Already as asked; a master still starting is waited for.
		err = b.awaitMaster(ctx, inst, m)
	default:
		err = b.personStart(ctx, inst)
	}
	if err != nil {
		return procmgr.Status{}, err
	}
	return b.snapshot(inst), nil
}

// Deprovision implements procmgr.Backend.
func (b *Backend) Deprovision(ctx context.Context, id procmgr.InstanceID, purge bool) error {
	unlock, err := b.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := b.teardown(ctx, b.instance(id)); err != nil {
		return err
	}
	if err := b.host.RemoveConfig(id); err != nil {
		return fmt.Errorf("supervise: deprovision %s: %w", id, err)
	}
	if err := b.host.Retire(ctx, id, purge); err != nil {
		return fmt.Errorf("supervise: deprovision %s: %w", id, err)
	}
	b.feed.Gone(id, b.Name())
	return nil
}

// teardown stops the master and removes everything the backend keeps for
// the instance: cgroups, runtime directory, state file, FIFO and log files.
// The instance is forgotten. The caller holds the instance lock.
func (b *Backend) teardown(ctx context.Context, inst *instance) error {
	log := b.logFor(inst.id, "remove")
	if err := b.stopMaster(ctx, inst, true); err != nil {
		return err
	}
	// Whatever is left of earlier masters (say, workers of a master that
	// died while no panel ran).
	b.cg.killAll(inst.id)
	b.waitGone(inst.id, 0, true)
	b.mu.Lock()
	inst.removed = true
	inst.tok++
	// A later instance of this id starts a fresh feed of statuses.
	b.feed.Forget(inst.id)
	if b.inst[inst.id] == inst {
		delete(b.inst, inst.id)
	}
	b.mu.Unlock()
	var errs []error
	if err := b.cg.remove(inst.id); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(b.host.Layout.RuntimeDir(inst.id)); err != nil {
		errs = append(errs, fmt.Errorf("supervise: %w", err))
	}
	inst.saveMu.Lock()
	if err := os.Remove(b.statePath(inst.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("supervise: %w", err))
	}
	inst.saveMu.Unlock()
	if err := inst.sink.remove(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("remove leftovers", "err", err)
		return err
	}
	return nil
}

// Start implements procmgr.Backend.
func (b *Backend) Start(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(inst *instance) error { return b.personStart(ctx, inst) })
}

// StartMany implements procmgr.BatchStarter: up to startManyParallel masters
// start at once, each waited for until it answers a ping.
func (b *Backend) StartMany(ctx context.Context, ids []procmgr.InstanceID) []error {
	t0 := time.Now()
	errs := make([]error, len(ids))
	sem := make(chan struct{}, startManyParallel)
	var wg sync.WaitGroup
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("supervise: start %s: %w", id, ctx.Err())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := b.Start(ctx, id); err != nil {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	b.log.Info("started instances", "action", "start-many", "count", len(ids), "took", time.Since(t0))
	return errs
}

// Stop implements procmgr.Backend.
func (b *Backend) Stop(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(inst *instance) error { return b.stopMaster(ctx, inst, false) })
}

// Restart implements procmgr.Backend: a graceful stop, then a start.
func (b *Backend) Restart(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(inst *instance) error {
		if err := b.stopMaster(ctx, inst, false); err != nil {
			return err
		}
		return b.personStart(ctx, inst)
	})
}

// Reload implements procmgr.Backend.
func (b *Backend) Reload(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(inst *instance) error {
		b.mu.Lock()
		m := inst.m
		b.mu.Unlock()
		if m == nil {
			return fmt.Errorf("supervise: reload %s: instance is not running: %w", id, procmgr.ErrConflict)
		}
		if err := b.awaitMaster(ctx, inst, m); err != nil {
			return err
		}
		return b.reloadMaster(ctx, inst, m)
	})
}

// Kill implements procmgr.Backend. It signals the master alone, through its
// pidfd (so a PID reused after the master's death is never hit), and takes
// no lock.
func (b *Backend) Kill(ctx context.Context, id procmgr.InstanceID, sig procmgr.Signal) error {
	if err := b.host.Provisioned(id); err != nil {
		return err
	}
	if sig.Number() == 0 {
		return fmt.Errorf("supervise: kill %s: signal %q: %w", id, sig, procmgr.ErrInvalid)
	}
	inst := b.instance(id)
	b.mu.Lock()
	m := inst.m
	b.mu.Unlock()
	if m == nil {
		return fmt.Errorf("supervise: kill %s: no running master: %w", id, procmgr.ErrConflict)
	}
	if err := m.signal(syscall.Signal(sig.Number())); err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("supervise: kill %s: no running master: %w", id, procmgr.ErrConflict)
		}
		return fmt.Errorf("supervise: kill %s with %s: %w", id, sig, err)
	}
	b.logFor(id, "kill").Info("signal sent to master", "signal", string(sig), "pid", m.pid)
	return nil
}

// SetLimits implements procmgr.Backend.
func (b *Backend) SetLimits(ctx context.Context, id procmgr.InstanceID, lim procmgr.Limits) (procmgr.Status, error) {
	return b.power(ctx, id, func(inst *instance) error { return b.applyLimits(inst, lim) })
}

// power runs one locked action on a provisioned instance and returns its
// status after.
func (b *Backend) power(ctx context.Context, id procmgr.InstanceID, f func(*instance) error) (procmgr.Status, error) {
	if err := b.open(id); err != nil {
		return procmgr.Status{}, err
	}
	return procmgr.Power(ctx, b.host, &b.locks, id, func() (procmgr.Status, error) {
		inst := b.instance(id)
		if err := f(inst); err != nil {
			return procmgr.Status{}, err
		}
		return b.snapshot(inst), nil
	})
}
