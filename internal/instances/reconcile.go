package instances

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
)

// reconcilerActor is who the audit log names for the reconciler's actions.
var reconcilerActor = auth.Principal{Name: "reconciler", Role: auth.RoleAdmin}

// Run loads the stored instances and what the backend observes, then keeps
// the in-memory view current from backend events and drives every instance
// toward its desired state, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	// Subscribe first, so no event between the load and the loop is lost.
	events, err := s.backend.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("instances: subscribe to the backend: %w", err)
	}
	if err := s.load(ctx); err != nil {
		return err
	}
	s.syncSites(ctx)
	// Marked before Started is closed, so that WaitIdle after Started
	// sees the work to do.
	s.mu.RLock()
	for id := range s.entries {
		s.enqueue(id)
	}
	s.mu.RUnlock()
	close(s.started)

	// The reconcile loop lives exactly as long as Run: it never writes after
	// Run returned (and the caller closed the database).
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range reconcileWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); s.reconcileLoop(rctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.watchHealth(rctx) }()
	// Creates still provisioning in the background are waited for too.
	defer func() { cancel(); wg.Wait(); s.background.Wait(); s.refusals.Wait() }()
	// retry is set while a re-read after lost events has yet to succeed.
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("instances: backend event stream closed")
			}
			s.setStatus(ev.Status)
			s.enqueue(ev.Status.ID)
			if ev.Lost {
				retry = s.resync(ctx)
			}
		case <-retry:
			retry = s.resync(ctx)
		}
	}
}

// resyncRetry is how long a failed re-read after lost events waits before
// the next attempt.
const resyncRetry = time.Second

// resync re-reads every instance from the backend after this service's
// subscription lost events (it fell more than procmgr.SubscriberBuffer
// behind): any of them may have been a "stopped" that the reconciler must
// act on. Every instance is queued for the reconciler. It returns nil, or a
// timer for the next attempt when List failed.
func (s *Service) resync(ctx context.Context) <-chan time.Time {
	s.log.Warn("backend events were lost; reading every instance again", "action", "resync")
	lctx, cancel := context.WithTimeout(ctx, actionTimeout)
	observed, err := s.backend.List(lctx)
	cancel()
	if err != nil {
		s.log.Error("re-read after lost events failed; retrying", "action", "resync", "err", err)
		return time.After(resyncRetry)
	}
	listed := map[procmgr.InstanceID]bool{}
	var newest uint64
	for _, st := range observed {
		s.setStatus(st)
		listed[st.ID] = true
		newest = max(newest, st.Seq)
	}
	var ids, gone []procmgr.InstanceID
	s.mu.Lock()
	for id, e := range s.entries {
		ids = append(ids, id)
		// Not on the host any more, and nothing newer than the list was
		// heard of it: absent, as load would say.
		if !listed[id] && e.row.Phase == PhaseReady && e.status.State != procmgr.StateAbsent && e.status.Seq <= newest {
			e.status = procmgr.Status{ID: id, State: procmgr.StateAbsent, Backend: s.backend.Name()}
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.publish(id)
	}
	for _, id := range ids {
		s.enqueue(id)
	}
	return nil
}

func (s *Service) load(ctx context.Context) error {
	rows, err := s.store.ListInstances(ctx)
	if err != nil {
		return fmt.Errorf("instances: load: %w", err)
	}
	observed, err := s.backend.List(ctx)
	if err != nil {
		return fmt.Errorf("instances: observe: %w", err)
	}
	byID := map[procmgr.InstanceID]procmgr.Status{}
	for _, st := range observed {
		byID[st.ID] = st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, row := range rows {
		spec, err := procmgr.UnmarshalSpec(row.ID, []byte(row.Spec))
		if err != nil {
			// A row that no longer validates is kept out of the view and
			// reported; it is never handed to the backend.
			s.log.Error("stored spec does not validate; instance ignored", "instance", row.ID, "err", err)
			continue
		}
		st, ok := byID[spec.ID]
		if !ok {
			st = procmgr.Status{ID: spec.ID, State: procmgr.StateAbsent, Backend: s.backend.Name()}
		}
		// A stopped instance's spec may have changed while it was
		// stopped, before this panel started: its next start writes the
		// config, unless the backend can tell it is current (a start
		// through the batch is much cheaper than a provision each).
		stale := row.DesiredState == DesiredStopped
		if cc, ok := s.backend.(procmgr.ConfigChecker); ok && stale {
			stale = !cc.ConfigCurrent(spec)
		}
		s.entries[spec.ID] = &entry{row: row, spec: spec, status: st, configStale: stale}
		delete(byID, spec.ID)
	}
	for id := range byID {
		s.log.Warn("backend runs an instance the database does not know; leaving it alone", "instance", string(id))
	}
	return nil
}

// reconcileRetry is how long the reconciler waits before it looks again at
// an instance whose record it could not write.
const reconcileRetry = 2 * time.Second

// retryLater marks id for the reconciler after reconcileRetry: a write to
// the database failed, and no event may ever come to bring it back.
func (s *Service) retryLater(id procmgr.InstanceID) {
	time.AfterFunc(reconcileRetry, func() { s.enqueue(id) })
}

// enqueue marks id for the reconciler. The mark is never dropped: at most
// one per instance waits, however many events arrive.
func (s *Service) enqueue(id procmgr.InstanceID) {
	// Count before marking, so WaitIdle never sees a marked id uncounted.
	s.pending.Add(1)
	if !s.dirty.Add(id) {
		s.pending.Add(-1)
	}
}

func (s *Service) reconcileLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty.Ready():
		}
		for ctx.Err() == nil {
			id, ok := s.dirty.Take()
			if !ok {
				break
			}
			// More waiting: wake another worker for them.
			if s.dirty.Len() > 0 {
				s.dirty.Wake()
			}
			s.reconcileOne(ctx, id)
			s.pending.Add(-1)
		}
	}
}

// reconcileOne makes one step toward the desired state of one instance.
//
//   - provisioning (the panel died mid-create): finish it, or roll back;
//   - removing (the panel died mid-remove): finish removing;
//   - ready and desired running: provision if the host lost it, start if
//     stopped. A failed instance (crash loop ended) is left failed for a
//     person to look at: restarting it here would undo the start limit;
//   - ready and desired stopped: stop it if it runs.
func (s *Service) reconcileOne(ctx context.Context, id procmgr.InstanceID) {
	unlock, locked := s.locks.TryLock(id)
	if !locked {
		// An action is in flight; look again when it ends.
		s.mu.Lock()
		if e, ok := s.entries[id]; ok {
			e.dirty = true
		}
		s.mu.Unlock()
		return
	}
	s.inflight.Add(1)
	defer s.release(id, unlock)
	row, spec, st, _, ok := s.entryOf(id)
	if !ok {
		return
	}
	state := st.State

	bctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	p := reconcilerActor
	switch row.Phase {
	case PhaseProvisioning:
		if s.installer != nil && cms.HasInstaller(spec.CMS) {
			// The CMS's admin login was to be shown to the person who
			// asked, who is gone: made again, nobody would know it.
			err := errors.New("the panel stopped while installing " + string(spec.CMS) + "; create it again")
			s.audit(p, "rollback-create", id, err, "")
			s.rollbackCreate(bctx, id, err)
			return
		}
		st, err := s.backend.Provision(bctx, spec)
		if err == nil {
			_, err = s.install(bctx, spec, cms.Site{Title: string(spec.ID), AdminUser: "admin", AdminEmail: "admin@example.invalid"})
		}
		if err == nil {
			err = s.publishSite(bctx, spec)
		}
		if err != nil {
			s.audit(p, "rollback-create", id, err, "")
			s.rollbackCreate(bctx, id, mapBackendErr(err))
			return
		}
		err = s.saveRow(bctx, id, func(r *store.Instance) { r.Phase = PhaseReady; r.LastError = "" })
		s.setStatus(st)
		if err != nil {
			s.retryLater(id)
		}
		s.audit(p, "finish-create", id, err, "")
	case PhaseRemoving, PhasePurging:
		purge := row.Phase == PhasePurging
		err := s.withdrawSite(bctx, id)
		if err == nil {
			err = s.backend.Deprovision(bctx, id, purge)
		}
		if err == nil && s.installer != nil {
			_, err = s.installer.Remove(bctx, id, spec.CMS, purge)
		}
		if err == nil {
			err = s.store.DeleteInstance(bctx, string(id))
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
		}
		if err == nil {
			s.mu.Lock()
			delete(s.entries, id)
			s.mu.Unlock()
			s.publish(id)
		}
		detail := ""
		if purge {
			detail = "purge"
		}
		s.audit(p, "finish-remove", id, err, detail)
	case PhaseReady:
		switch {
		case row.DesiredState == DesiredRunning && (state == procmgr.StateAbsent || state == procmgr.StateStopped):
			if !s.mayAutoStart(id) {
				// The instance keeps stopping on its own (its code exits
				// cleanly, which no restart policy counts): leave it, as
				// systemd's start limit would, until a person starts it.
				s.recordError(bctx, id, fmt.Errorf("instances: %s stopped on its own %d times in %s; not started again until a person does", id, autoStartBurst, autoStartWindow))
				return
			}
			st, err := s.startOrProvision(bctx, id)
			if err == nil {
				s.setStatus(st)
			} else {
				s.recordError(bctx, id, err)
			}
			s.audit(p, "start", id, err, "desired running, observed "+string(state))
		case row.DesiredState == DesiredStopped && (state == procmgr.StateRunning || state == procmgr.StateStarting || state == procmgr.StateCrashLooping):
			st, err := s.backend.Stop(bctx, id)
			if err == nil {
				s.setStatus(st)
			}
			s.audit(p, "stop", id, err, "desired stopped, observed "+string(state))
		}
	}
}

// The reconciler starts an instance that stopped on its own at most
// autoStartBurst times in autoStartWindow, as systemd's start limit does:
// an instance whose code keeps exiting cleanly must not cost a provision and
// an audit row every few milliseconds forever.
const (
	autoStartBurst  = 5
	autoStartWindow = time.Minute
)

// mayAutoStart records one reconciler start of id, or says the limit is
// reached. A person's start clears the record.
func (s *Service) mayAutoStart(id procmgr.InstanceID) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return false
	}
	recent := e.autoStarts[:0]
	for _, t := range e.autoStarts {
		if now.Sub(t) < autoStartWindow {
			recent = append(recent, t)
		}
	}
	e.autoStarts = recent
	if len(recent) >= autoStartBurst {
		return false
	}
	e.autoStarts = append(e.autoStarts, now)
	return true
}

// WaitIdle waits until no action holds a lock and the reconcile queue is
// empty, or ctx ends. Tests and shutdown use it.
func (s *Service) WaitIdle(ctx context.Context) error {
	for {
		if s.inflight.Load() == 0 && s.pending.Load() == 0 && s.refusing.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// syncSites publishes the site of every ready instance and nothing else, as
// the panel starts: a site the web server still has of an instance removed
// meanwhile goes, and one that a panel killed mid-create never published
// is published by the reconciler when it finishes the create. A failure is
// logged: the web server keeps the config it has, and sites keep serving.
func (s *Service) syncSites(ctx context.Context) {
	if s.front == nil {
		return
	}
	var specs []procmgr.Spec
	s.mu.RLock()
	for _, e := range s.entries {
		if e.row.Phase == PhaseReady {
			specs = append(specs, e.spec)
		}
	}
	s.mu.RUnlock()
	sort.Slice(specs, func(i, j int) bool { return specs[i].ID < specs[j].ID })
	sctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	if err := s.front.Sync(sctx, specs); err != nil {
		s.log.Error("publishing the sites failed; the web server keeps its previous config", "action", "sync-sites", "err", err)
	}
}
