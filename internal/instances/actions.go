package instances

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
)

// CreateRequest asks for a new instance.
type CreateRequest struct {
	ID      string            `json:"id"`
	OwnerID *uint             `json:"owner_id,omitempty"`
	Spec    procmgr.SpecInput `json:"spec"`
	// Site is what the CMS's installer is told (title, admin user and
	// e-mail); empty fields take defaults.
	Site cms.Site `json:"site"`
}

// mapBackendErr turns backend errors into the domain's sentinels, keeping
// the chain for the message.
func mapBackendErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, procmgr.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, procmgr.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// Create records the instance, provisions it and returns it running. If
// provisioning fails, the backend has undone its part and the record is
// deleted: nothing is left half made.
func (s *Service) Create(ctx context.Context, p auth.Principal, req CreateRequest) (View, error) {
	finish, err := s.beginCreate(ctx, p, req)
	if err != nil {
		return View{}, err
	}
	return finish()
}

// BeginCreate does what Create does, but returns as soon as the instance is
// recorded (phase provisioning) and provisions it in the background, so that
// a browser can follow it live. A refused request (invalid spec, taken id,
// forbidden) is returned at once, with nothing recorded. The background
// part ends like Create: running, or removed again with the reason in the
// published view's last error and in the audit log.
func (s *Service) BeginCreate(ctx context.Context, p auth.Principal, req CreateRequest) (View, error) {
	finish, err := s.beginCreate(ctx, p, req)
	if err != nil {
		return View{}, err
	}
	id, _ := procmgr.ParseInstanceID(req.ID)
	v, verr := s.viewOf(id)
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		finish()
	}()
	return v, verr
}

// beginCreate checks and records a create; the returned func provisions,
// audits and releases the instance's lock. On error nothing is recorded and
// the refusal is audited.
func (s *Service) beginCreate(ctx context.Context, p auth.Principal, req CreateRequest) (finish func() (View, error), err error) {
	if !accessManage.allowed(p, nil) {
		id, _ := procmgr.ParseInstanceID(req.ID)
		s.auditRefused(p, "create", id, fmt.Sprintf("role %s may not create instances", p.Role))
		return nil, fmt.Errorf("create: role %s may not create instances: %w", p.Role, ErrForbidden)
	}
	spec, err := procmgr.ParseSpec(req.ID, req.Spec, s.backend.InstalledPHP())
	if err != nil {
		return nil, err
	}
	site := req.Site
	if s.installer != nil {
		// Without an installer the CMS is a label, and the site's inputs
		// are not used.
		if site, err = cms.ParseSite(req.Site, spec); err != nil {
			return nil, err
		}
	}
	id := spec.ID
	specJSON, err := procmgr.MarshalSpec(spec)
	if err != nil {
		return nil, err
	}
	// A lock already held means another create (or a remove) of this id
	// is in flight: a conflict, told at once rather than after waiting.
	unlock, free := s.locks.TryLock(id)
	if !free {
		err := fmt.Errorf("instance %s is being created or removed: %w", id, ErrConflict)
		s.audit(p, "create", id, err, "")
		return nil, err
	}
	s.inflight.Add(1)
	unclaim, err := s.claimDomains(id, spec.Domains)
	if err != nil {
		s.release(id, unlock)
		s.audit(p, "create", id, err, "")
		return nil, err
	}
	// Once the entry is in the map it holds the domains itself.
	defer unclaim()
	fail := func(err error) (func() (View, error), error) {
		s.release(id, unlock)
		s.audit(p, "create", id, err, "")
		return nil, err
	}
	row := store.Instance{
		ID: string(id), OwnerID: req.OwnerID, CMS: string(spec.CMS), PHPVersion: string(spec.PHP),
		Spec: string(specJSON), DesiredState: DesiredRunning, Phase: PhaseProvisioning, Generation: 1,
	}
	s.mu.Lock()
	_, exists := s.entries[id]
	s.mu.Unlock()
	if exists {
		return fail(fmt.Errorf("instance %s already exists: %w", id, ErrConflict))
	}
	// Intent first: a panel killed from here on finds the row and finishes
	// or rolls back the create.
	if err := s.store.CreateInstance(ctx, &row); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return fail(fmt.Errorf("instance %s already exists: %w", id, ErrConflict))
		case errors.Is(err, store.ErrInvalid) && req.OwnerID != nil:
			return fail(&procmgr.FieldError{Field: "owner_id", Value: fmt.Sprint(*req.OwnerID), Rule: "must be the id of an existing user"})
		}
		return fail(fmt.Errorf("instances: record %s: %w", id, err))
	}
	s.mu.Lock()
	s.entries[id] = &entry{row: row, spec: spec, status: procmgr.Status{ID: id, State: procmgr.StateProvisioning, Backend: s.backend.Name()}}
	s.mu.Unlock()
	s.publish(id)
	bctx, cancel := detached(ctx)
	return func() (v View, err error) {
		defer cancel()
		defer s.release(id, unlock)
		defer func() { s.audit(p, "create", id, err, "") }()
		return s.provisionNew(bctx, id, spec, site)
	}, nil
}

// provisionNew is the second half of a create: the backend's part.
func (s *Service) provisionNew(bctx context.Context, id procmgr.InstanceID, spec procmgr.Spec, site cms.Site) (View, error) {
	// An instance the host has but the database does not (a restored
	// backup, a second panel) is not adopted by a create: its rollback
	// would remove what it did not make.
	if _, serr := s.backend.Status(bctx, id); !errors.Is(serr, procmgr.ErrNotFound) {
		s.store.DeleteInstance(bctx, string(id))
		s.mu.Lock()
		delete(s.entries, id)
		s.mu.Unlock()
		if serr == nil {
			serr = errors.New("it exists on this host but not in the panel's database")
		}
		err := fmt.Errorf("instance %s: %w: %w", id, ErrConflict, serr)
		s.publishGone(id, err)
		return View{}, err
	}
	st, perr := s.backend.Provision(bctx, spec)
	var installed cms.Result
	if perr == nil {
		installed, perr = s.install(bctx, spec, site)
	}
	if perr == nil {
		perr = s.publishSite(bctx, spec)
	}
	if perr != nil {
		err := mapBackendErr(perr)
		s.rollbackCreate(bctx, id, err)
		return View{}, err
	}
	if err := s.saveRow(bctx, id, func(r *store.Instance) { r.Phase = PhaseReady; r.LastError = "" }); err != nil {
		// The instance runs, but is not recorded as ready: the
		// reconciler finishes the create (Provision is idempotent) and
		// tries again until the record is written, so the instance is
		// not left provisioning, refusing every action.
		s.setStatus(st)
		s.retryLater(id)
		return View{}, fmt.Errorf("%w (the instance runs; the panel records it as ready when the database answers)", err)
	}
	s.setStatus(st)
	v, err := s.viewOf(id)
	if installed != (cms.Result{}) {
		v.Installed = &installed
	}
	return v, err
}

// install runs the CMS installer, if there is one.
func (s *Service) install(ctx context.Context, spec procmgr.Spec, site cms.Site) (cms.Result, error) {
	if s.installer == nil {
		return cms.Result{}, nil
	}
	return s.installer.Install(ctx, spec, site)
}

// rollbackCreate removes what a failed create left: the backend's part
// (Provision undid its own, this covers a half-made earlier attempt) and the
// record.
func (s *Service) rollbackCreate(ctx context.Context, id procmgr.InstanceID, why error) {
	if err := s.withdrawSite(ctx, id); err != nil {
		s.log.Error("rollback: withdraw site", "instance", string(id), "action", "create", "err", err)
	}
	if _, spec, _, _, ok := s.entryOf(id); ok && s.installer != nil {
		if _, err := s.installer.Remove(ctx, id, spec.CMS, true); err != nil {
			s.log.Error("rollback: drop database", "instance", string(id), "action", "create", "err", err)
		}
	}
	// Purged: an instance that never became ready holds only what its own
	// provisioning made, and a kept tree would refuse every later create
	// of the id.
	if err := s.backend.Deprovision(ctx, id, true); err != nil {
		s.log.Error("rollback: deprovision", "instance", string(id), "action", "create", "err", err)
	}
	if err := s.store.DeleteInstance(ctx, string(id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("rollback: delete record", "instance", string(id), "action", "create", "err", err)
	}
	s.mu.Lock()
	delete(s.entries, id)
	s.mu.Unlock()
	s.publishGone(id, why)
}

// publishSite publishes spec's site through the front door, if there is one.
func (s *Service) publishSite(ctx context.Context, spec procmgr.Spec) error {
	if s.front == nil {
		return nil
	}
	if err := s.front.Publish(ctx, spec); err != nil {
		return fmt.Errorf("instances: publish the site of %s: %w", spec.ID, err)
	}
	return nil
}

// withdrawSite removes id's site from the front door, if there is one.
func (s *Service) withdrawSite(ctx context.Context, id procmgr.InstanceID) error {
	if s.front == nil {
		return nil
	}
	if err := s.front.Withdraw(ctx, id); err != nil {
		return fmt.Errorf("instances: withdraw the site of %s: %w", id, err)
	}
	return nil
}

// siteChanged says whether the front door's part of the spec differs.
func siteChanged(a, b procmgr.Spec) bool {
	if a.Pool.UploadMax != b.Pool.UploadMax || a.Pool.MaxExecutionTime != b.Pool.MaxExecutionTime || len(a.Domains) != len(b.Domains) {
		return true
	}
	for i := range a.Domains {
		if a.Domains[i] != b.Domains[i] {
			return true
		}
	}
	return false
}

func (s *Service) viewOf(id procmgr.InstanceID) (View, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.entries[id]
	if !ok {
		return View{}, fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	return s.viewLocked(e), nil
}

// power records the desired state (if any), runs the backend action and
// audits it.
func (s *Service) power(ctx context.Context, p auth.Principal, rawID, action, desired string,
	do func(context.Context, procmgr.InstanceID) (procmgr.Status, error)) (v View, err error) {
	id, err := s.lookup(p, rawID, accessPower, action)
	if err != nil {
		return View{}, err
	}
	detail := ""
	defer func() { s.audit(p, action, id, err, detail) }()
	release, err := s.acquire(ctx, id)
	if err != nil {
		return View{}, err
	}
	defer release()
	if err := s.requireReady(id); err != nil {
		return View{}, err
	}
	// A start of a running instance or a stop of a stopped one is no
	// error, but the record says it changed nothing.
	if row, _, st, _, ok := s.entryOf(id); ok && row.DesiredState == desired &&
		(desired == DesiredStopped && st.State == procmgr.StateStopped || action == "start" && st.State == procmgr.StateRunning) {
		detail = "no change: already " + string(st.State)
	}
	bctx, cancel := detached(ctx)
	defer cancel()
	if desired != "" {
		if err := s.saveRow(bctx, id, func(r *store.Instance) { r.DesiredState = desired }); err != nil {
			return View{}, err
		}
	}
	st, err := do(bctx, id)
	if err != nil {
		s.recordError(bctx, id, err)
		return View{}, mapBackendErr(err)
	}
	s.setStatus(st)
	return s.viewOf(id)
}

// requireReady refuses actions on an instance that a create or a remove
// left half done: only the reconciler finishes those (or a remove).
func (s *Service) requireReady(id procmgr.InstanceID) error {
	row, _, _, _, ok := s.entryOf(id)
	if !ok {
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	if row.Phase != PhaseReady {
		return fmt.Errorf("instance %s is %s; wait for the panel to finish it: %w", id, row.Phase, ErrConflict)
	}
	return nil
}

func (s *Service) recordError(ctx context.Context, id procmgr.InstanceID, err error) {
	msg := err.Error()
	if serr := s.saveRow(ctx, id, func(r *store.Instance) { r.LastError = msg }); serr != nil {
		s.log.Warn("record error", "instance", string(id), "err", serr)
	}
}

// Start starts an instance and records that it should run. A person's
// start also lifts the reconciler's limit on starting it again.
func (s *Service) Start(ctx context.Context, p auth.Principal, id string) (View, error) {
	return s.power(ctx, p, id, "start", DesiredRunning, func(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
		s.mu.Lock()
		if e, ok := s.entries[id]; ok {
			e.autoStarts = nil
		}
		s.mu.Unlock()
		return s.startOrProvision(ctx, id)
	})
}

// startOrProvision starts an instance through Provision, which also writes
// a config changed while the instance was stopped, and makes the instance
// again if the host lost it (a restored database, a wiped machine). On an
// instance that matches its spec it is a plain start.
func (s *Service) startOrProvision(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	_, spec, _, _, ok := s.entryOf(id)
	if !ok {
		return procmgr.Status{}, fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	st, err := s.backend.Provision(ctx, spec)
	if err == nil {
		s.setConfigStale(id, false)
	}
	return st, err
}

// Stop stops an instance and records that it should stay stopped.
func (s *Service) Stop(ctx context.Context, p auth.Principal, id string) (View, error) {
	return s.power(ctx, p, id, "stop", DesiredStopped, s.backend.Stop)
}

// Restart restarts an instance (starts it if stopped).
func (s *Service) Restart(ctx context.Context, p auth.Principal, id string) (View, error) {
	return s.power(ctx, p, id, "restart", DesiredRunning, func(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
		if _, _, _, stale, _ := s.entryOf(id); stale {
			if _, err := s.startOrProvision(ctx, id); err != nil {
				return procmgr.Status{}, err
			}
		}
		return s.backend.Restart(ctx, id)
	})
}

// Reload reloads an instance's pool gracefully.
func (s *Service) Reload(ctx context.Context, p auth.Principal, id string) (View, error) {
	return s.power(ctx, p, id, "reload", "", s.backend.Reload)
}

// Kill sends a signal to an instance's master. It is not serialised behind
// other actions: it is how a stuck action is ended.
func (s *Service) Kill(ctx context.Context, p auth.Principal, rawID, rawSignal string) (err error) {
	id, err := s.lookup(p, rawID, accessManage, "kill")
	if err != nil {
		return err
	}
	sig, err := procmgr.ParseSignal(rawSignal)
	if err != nil {
		return err
	}
	defer func() { s.audit(p, "kill", id, err, "signal "+string(sig)) }()
	return mapBackendErr(s.backend.Kill(ctx, id, sig))
}

// lockFor looks an instance up for an action p may take and takes its
// action lock; release gives it back.
func (s *Service) lockFor(ctx context.Context, p auth.Principal, rawID string, a access, action string) (procmgr.InstanceID, func(), error) {
	id, err := s.lookup(p, rawID, a, action)
	if err != nil {
		return "", nil, err
	}
	release, err := s.acquire(ctx, id)
	if err != nil {
		return "", nil, err
	}
	return id, release, nil
}

// Set changes an instance's settings. Fields left empty keep their current
// value. Limits alone are applied live; pool or PHP changes rewrite the config
// and reload the pool gracefully.
func (s *Service) Set(ctx context.Context, p auth.Principal, rawID string, in procmgr.SpecInput) (v View, err error) {
	id, release, err := s.lockFor(ctx, p, rawID, accessManage, "set")
	if err != nil {
		return View{}, err
	}
	defer release()
	if err := s.requireReady(id); err != nil {
		return View{}, err
	}
	row, cur, _, _, _ := s.entryOf(id)
	next, err := procmgr.ParseSpec(string(id), in.Overlay(cur.Input()), s.backend.InstalledPHP())
	if err != nil {
		return View{}, err
	}
	unclaim, err := s.claimDomains(id, next.Domains)
	if err != nil {
		return View{}, err
	}
	defer unclaim()
	defer func() { s.audit(p, "set", id, err, describeChange(cur, next)) }()
	bctx, cancel := detached(ctx)
	defer cancel()
	specJSON, err := procmgr.MarshalSpec(next)
	if err != nil {
		return View{}, err
	}

	// A transaction: the backend takes the new spec first, and only then
	// is it recorded. A backend that refuses it gets the old one back, and
	// nothing is recorded; a record that cannot be written puts the old
	// spec back on the backend. Either way the stored spec is the one the
	// instance runs.
	onlyLimits := cur.PHP == next.PHP && cur.Pool == next.Pool && envEqual(cur.Env, next.Env)
	stopped := row.DesiredState == DesiredStopped
	site := siteChanged(cur, next)
	apply := func(spec procmgr.Spec) (procmgr.Status, error) {
		var st procmgr.Status
		var err error
		if onlyLimits || stopped {
			// A stopped instance stays stopped; its new config is written
			// at its next start.
			st, err = s.backend.SetLimits(bctx, id, spec.Limits)
		} else {
			st, err = s.backend.Provision(bctx, spec)
		}
		if err == nil && site {
			// The front door is a transaction of its own: a refusal
			// leaves its previous config in place.
			err = s.publishSite(bctx, spec)
		}
		return st, err
	}
	st, err := apply(next)
	if err != nil {
		if _, rerr := apply(cur); rerr != nil {
			s.log.Error("putting the previous spec back failed", "action", "set", "instance", string(id), "err", rerr)
			err = fmt.Errorf("%w; and putting the previous settings back failed: %v", err, rerr)
		}
		s.recordError(bctx, id, err)
		return View{}, mapBackendErr(err)
	}
	if err := s.saveRow(bctx, id, func(r *store.Instance) {
		r.Spec, r.PHPVersion, r.CMS = string(specJSON), string(next.PHP), string(next.CMS)
	}); err != nil {
		if back, rerr := apply(cur); rerr != nil {
			s.log.Error("putting the previous spec back after a failed record failed", "action", "set", "instance", string(id), "err", rerr)
		} else {
			s.setStatus(back)
		}
		return View{}, err
	}
	s.mu.Lock()
	s.entries[id].spec = next
	s.mu.Unlock()
	if !onlyLimits && stopped {
		s.setConfigStale(id, true)
	}
	s.setStatus(st)
	return s.viewOf(id)
}

func envEqual(a, b []procmgr.EnvVar) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func describeChange(a, b procmgr.Spec) string {
	ai, bi := a.Input(), b.Input()
	var parts []string
	add := func(name, x, y string) {
		if x != y {
			parts = append(parts, fmt.Sprintf("%s %s->%s", name, x, y))
		}
	}
	add("php", ai.PHP, bi.PHP)
	add("pm", ai.PM, bi.PM)
	add("max_children", ai.MaxChildren, bi.MaxChildren)
	add("start_servers", ai.StartServers, bi.StartServers)
	add("min_spare", ai.MinSpareServers, bi.MinSpareServers)
	add("max_spare", ai.MaxSpareServers, bi.MaxSpareServers)
	add("max_requests", ai.MaxRequests, bi.MaxRequests)
	add("memory_limit", ai.MemoryLimit, bi.MemoryLimit)
	add("max_execution_time", ai.MaxExecutionTime, bi.MaxExecutionTime)
	add("upload_max", ai.UploadMax, bi.UploadMax)
	add("memory_max", ai.MemoryMax, bi.MemoryMax)
	add("cpu_quota", ai.CPUQuota, bi.CPUQuota)
	add("tasks_max", ai.TasksMax, bi.TasksMax)
	add("env", strings.Join(ai.Env, ","), strings.Join(bi.Env, ","))
	add("domains", strings.Join(ai.Domains, ","), strings.Join(bi.Domains, ","))
	add("on_unhealthy", ai.OnUnhealthy, bi.OnUnhealthy)
	return strings.Join(parts, "; ")
}

// SetOwner gives an instance to a user (nil: to nobody). Admins only; the
// owner's role is not checked here, so an admin may park an instance with
// a support account, which then sees it as it sees every instance.
func (s *Service) SetOwner(ctx context.Context, p auth.Principal, rawID string, owner *uint) (v View, err error) {
	id, release, err := s.lockFor(ctx, p, rawID, accessManage, "owner")
	if err != nil {
		return View{}, err
	}
	defer release()
	detail := "owner none"
	if owner != nil {
		detail = fmt.Sprintf("owner user %d", *owner)
	}
	defer func() { s.audit(p, "owner", id, err, detail) }()
	bctx, cancel := detached(ctx)
	defer cancel()
	if err := s.saveRow(bctx, id, func(r *store.Instance) { r.OwnerID = owner }); err != nil {
		if errors.Is(err, store.ErrInvalid) && owner != nil {
			return View{}, &procmgr.FieldError{Field: "owner_id", Value: fmt.Sprint(*owner), Rule: "must be the id of an existing user"}
		}
		return View{}, err
	}
	return s.viewOf(id)
}

// Remove deprovisions an instance and deletes its record; its files are kept
// unless purge.
func (s *Service) Remove(ctx context.Context, p auth.Principal, rawID string, purge bool) (err error) {
	id, err := s.lookup(p, rawID, accessManage, "remove")
	if err != nil {
		return err
	}
	detail := ""
	if purge {
		detail = "purge"
	}
	defer func() { s.audit(p, "remove", id, err, detail) }()
	release, err := s.acquire(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	_, spec, _, _, ok := s.entryOf(id)
	if !ok {
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	bctx, cancel := detached(ctx)
	defer cancel()
	phase := PhaseRemoving
	if purge {
		phase = PhasePurging
	}
	if err := s.saveRow(bctx, id, func(r *store.Instance) { r.Phase = phase }); err != nil {
		return err
	}
	// The site goes first: its domains must not reach a socket that is
	// about to vanish, nor files about to be deleted.
	if err := s.withdrawSite(bctx, id); err != nil {
		s.recordError(bctx, id, err)
		return err
	}
	if err := s.backend.Deprovision(bctx, id, purge); err != nil {
		s.recordError(bctx, id, err)
		return mapBackendErr(err)
	}
	if s.installer != nil {
		if _, err := s.installer.Remove(bctx, id, spec.CMS, purge); err != nil {
			s.recordError(bctx, id, err)
			return err
		}
	}
	if err := s.store.DeleteInstance(bctx, string(id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("instances: delete record of %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.entries, id)
	s.mu.Unlock()
	s.publish(id)
	return nil
}

// StartAllResult is what a batch start did, instance by instance.
type StartAllResult struct {
	Started []string       `json:"started"`
	Failed  []StartFailure `json:"failed"`
}

// StartFailure is one instance a batch start could not start, and why.
type StartFailure struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// StartAll starts every stopped instance p may power, in one batch. Each
// instance succeeds or fails on its own: one that failed in the batch (a
// start job that timed out on a loaded host) is tried once more on its
// own, and one that fails again is reported with its reason and its error
// recorded; the rest of the batch is unaffected. The error is for the
// batch as a whole (the intent could not be recorded).
func (s *Service) StartAll(ctx context.Context, p auth.Principal) (res StartAllResult, err error) {
	res.Started, res.Failed = []string{}, []StartFailure{}
	var ids []procmgr.InstanceID
	s.mu.RLock()
	for id, e := range s.entries {
		if accessPower.allowed(p, e.row.OwnerID) && e.row.Phase == PhaseReady && e.status.State != procmgr.StateRunning {
			ids = append(ids, id)
		}
	}
	s.mu.RUnlock()
	defer func() {
		detail := fmt.Sprintf("%d started, %d failed", len(res.Started), len(res.Failed))
		for i, f := range res.Failed {
			if i == 10 {
				detail += ", ..."
				break
			}
			detail += " " + f.ID
		}
		s.audit(p, "start-all", "", err, detail)
	}()
	// Locks in id order: every other action holds one lock at most, so this
	// cannot deadlock.
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var todo []procmgr.InstanceID
	var names []string
	for _, id := range ids {
		release, err := s.acquire(ctx, id)
		if err != nil {
			return res, err
		}
		defer release()
		// Removed or started while this waited: skip it.
		if row, _, st, _, ok := s.entryOf(id); ok && row.Phase == PhaseReady && st.State != procmgr.StateRunning {
			todo = append(todo, id)
			names = append(names, string(id))
		}
	}
	bctx, cancel := detached(ctx)
	defer cancel()
	// One transaction for all the intents, then one batch of start jobs.
	if err := s.store.SetDesiredStates(bctx, names, DesiredRunning); err != nil {
		return res, fmt.Errorf("instances: record intent: %w", err)
	}
	s.mu.Lock()
	for _, id := range todo {
		if e, ok := s.entries[id]; ok {
			e.row.DesiredState = DesiredRunning
			e.row.Generation++
		}
	}
	s.mu.Unlock()
	// Instances whose config changed while stopped go through Provision;
	// the rest start in one batch. Those that fail are tried once more,
	// on their own.
	var batch, again []procmgr.InstanceID
	for _, id := range todo {
		if _, _, _, stale, _ := s.entryOf(id); stale {
			again = append(again, id)
		} else {
			batch = append(batch, id)
		}
	}
	for i, err := range procmgr.StartAll(bctx, s.backend, batch) {
		if err != nil {
			s.log.Warn("start in a batch failed; trying it alone", "action", "start-all", "instance", string(batch[i]), "err", err)
			again = append(again, batch[i])
		} else {
			res.Started = append(res.Started, string(batch[i]))
		}
	}
	// One at a time these would take as long as a create each: after a
	// panel restart every stopped instance is in this list (its config is
	// written again at its next start).
	var mu sync.Mutex
	sem := make(chan struct{}, startAloneParallel)
	var wg sync.WaitGroup
	for _, id := range again {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, err := s.startOrProvision(bctx, id)
			if err != nil {
				err = mapBackendErr(err)
				s.recordError(bctx, id, err)
			} else {
				s.setStatus(st)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed = append(res.Failed, StartFailure{ID: string(id), Error: err.Error()})
			} else {
				res.Started = append(res.Started, string(id))
			}
		}()
	}
	wg.Wait()
	sort.Strings(res.Started)
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].ID < res.Failed[j].ID })
	return res, nil
}

// startAloneParallel bounds the instances a batch start starts on their own
// (their config rewritten, or a retry) at once.
const startAloneParallel = 16

// Health probes an instance's pool.
func (s *Service) Health(ctx context.Context, p auth.Principal, rawID string) (procmgr.Health, error) {
	id, err := s.lookup(p, rawID, accessRead, "health")
	if err != nil {
		return procmgr.Health{}, err
	}
	h, err := procmgr.ProbeHealth(ctx, s.backend, s.layout, id)
	if err != nil {
		return h, mapBackendErr(err)
	}
	if _, spec, _, _, ok := s.entryOf(id); ok && s.front != nil && len(spec.Domains) > 0 {
		probe := s.front.Probe(ctx, spec)
		h.HTTP = &probe
		if !probe.OK && h.Healthy {
			h.Healthy, h.Reason = false, "through the web server: "+probe.Reason
		}
	}
	return h, nil
}

// Logs returns the last n log lines of an instance.
func (s *Service) Logs(ctx context.Context, p auth.Principal, rawID string, n int) ([]procmgr.LogLine, error) {
	id, err := s.lookup(p, rawID, accessRead, "logs")
	if err != nil {
		return nil, err
	}
	lines, err := procmgr.ReadLogs(ctx, s.backend, id, n)
	return lines, mapBackendErr(err)
}

// AccessLog returns the last n lines of the requests visitors made to an
// instance's site (none when the panel manages no web server).
func (s *Service) AccessLog(ctx context.Context, p auth.Principal, rawID string, n int) ([]string, error) {
	id, err := s.lookup(p, rawID, accessRead, "logs")
	if err != nil {
		return nil, err
	}
	row, _, _, _, ok := s.entryOf(id)
	if s.front == nil || !ok {
		return []string{}, nil
	}
	lines, err := s.front.AccessLog(id, row.CreatedAt, n)
	if lines == nil {
		lines = []string{}
	}
	return lines, err
}

// FollowLogs streams an instance's log until ctx ends.
func (s *Service) FollowLogs(ctx context.Context, p auth.Principal, rawID string, n int) (<-chan procmgr.LogLine, error) {
	id, err := s.lookup(p, rawID, accessRead, "logs")
	if err != nil {
		return nil, err
	}
	ch, err := procmgr.FollowLogs(ctx, s.backend, id, n)
	return ch, mapBackendErr(err)
}
