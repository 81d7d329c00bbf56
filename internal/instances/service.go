// Package instances is the panel's domain: every action on an instance is
// stored intent, a call to the process backend and an audit record; the
// observed state is kept in memory from the backend's events; and a
// reconciler drives what runs toward what was asked.
package instances

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/coalesce"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
)

// Errors callers branch on; the web layer maps them to HTTP statuses.
var (
	ErrNotFound  = errors.New("instance not found")
	ErrConflict  = errors.New("conflict")
	ErrInvalid   = procmgr.ErrInvalid
	ErrForbidden = errors.New("not allowed")
)

// Backend is what the domain calls of a process backend: procmgr.Backend's
// core without Close (whoever opened the backend closes it). The optional
// powers are reached through procmgr's helpers, which fall back when a
// backend lacks them: batch start (procmgr.StartAll over
// procmgr.BatchStarter), logs (procmgr.ReadLogs and procmgr.FollowLogs over
// procmgr.LogReader) and health (procmgr.ProbeHealth, over the socket). An
// instance the backend does not have is an error wrapping
// procmgr.ErrNotFound, except where said.
type Backend interface {
	// Name names the backend ("systemd", "supervise") in statuses and on
	// the status page.
	Name() string

	// Provision makes the instance exist as spec says and returns it
	// running once its pool answers. An instance that already matches spec
	// is left as it is and its status returned; a changed spec is written
	// and the pool reloaded gracefully. A failure undoes what the call made.
	Provision(ctx context.Context, spec procmgr.Spec) (procmgr.Status, error)

	// Deprovision stops and removes the instance, keeping its files unless
	// purge. An absent instance is not an error.
	Deprovision(ctx context.Context, id procmgr.InstanceID, purge bool) error

	// Start starts the instance and returns once its pool answers. A
	// running instance is not an error: its status is returned.
	Start(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error)

	// Stop stops the instance and returns once it is stopped. A stopped
	// instance is not an error: its status is returned.
	Stop(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error)

	// Restart is stop then start; a stopped instance is simply started.
	Restart(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error)

	// Reload reloads the pool's config gracefully. An instance that is not
	// running is an error wrapping procmgr.ErrConflict.
	Reload(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error)

	// Kill sends sig to the master alone, without waiting behind an action
	// in flight. An instance with no running master is an error wrapping
	// procmgr.ErrConflict.
	Kill(ctx context.Context, id procmgr.InstanceID, sig procmgr.Signal) error

	// SetLimits applies lim to the running or stopped instance without a
	// restart and fails unless the host reads back what was asked. Limits
	// already in place are applied again, which changes nothing.
	SetLimits(ctx context.Context, id procmgr.InstanceID, lim procmgr.Limits) (procmgr.Status, error)

	// Status reads the instance's status now.
	Status(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error)

	// List reads every instance the backend has on the host (none: an
	// empty list).
	List(ctx context.Context) ([]procmgr.Status, error)

	// Subscribe streams every instance's status changes until ctx ends or
	// the backend closes. The first event after events were lost is marked
	// Lost. Past procmgr.MaxSubscribers it fails.
	Subscribe(ctx context.Context) (<-chan procmgr.Event, error)

	// InstalledPHP lists the PHP versions an instance may use here.
	InstalledPHP() []procmgr.PHPVersion
}

// FrontDoor publishes instances' sites to visitors: the web server in front
// of the pools (nginx). Every change is a transaction: the web server's
// whole config is checked before it reloads, and any failure puts the
// previous config back, so one instance's change never stops the others'
// sites. An instance without domains has no site.
type FrontDoor interface {
	// Publish makes spec's site (its domains, upload limit, timeouts,
	// socket) the one visitors reach, and returns once the web server
	// serves it. Publishing a site as it is changes nothing.
	Publish(ctx context.Context, spec procmgr.Spec) error

	// Withdraw removes the instance's site; its domains then answer as
	// unknown hosts. No site: not an error.
	Withdraw(ctx context.Context, id procmgr.InstanceID) error

	// Sync publishes exactly these sites, as at the panel's start (sites
	// of instances the panel no longer has are removed).
	Sync(ctx context.Context, specs []procmgr.Spec) error

	// Probe asks the web server for the instance's primary domain, on the
	// path that reaches the pool's ping.
	Probe(ctx context.Context, spec procmgr.Spec) procmgr.HTTPProbe

	// Up says whether the web server runs, in words for a person.
	Up(ctx context.Context) (bool, string)

	// AccessLog returns the last n requests to the instance's site made
	// since since (its creation: never an earlier instance's of the id).
	AccessLog(id procmgr.InstanceID, since time.Time, n int) ([]string, error)
}

// Installer puts a CMS into a new instance and takes its database away
// with it (internal/cms).
type Installer interface {
	// Install puts spec's CMS into the instance, whose pool runs. An
	// instance with files already is left as it is. A failure names the
	// step; the create's rollback (a purge, and Remove) takes what it made.
	Install(ctx context.Context, spec procmgr.Spec, site cms.Site) (cms.Result, error)
	// Remove drops the instance's database when purge; without it the
	// database is kept, and kept says so.
	Remove(ctx context.Context, id procmgr.InstanceID, c procmgr.CMS, purge bool) (kept string, err error)
}

// WebServerStatus is the front door as /healthz and `panel status` show it.
type WebServerStatus struct {
	// Managed is false when the panel runs no web server (--http-listen
	// none); then the rest is empty.
	Managed bool   `json:"managed"`
	Up      bool   `json:"up"`
	Detail  string `json:"detail,omitempty"`
}

// WebServer reports the front door.
func (s *Service) WebServer(ctx context.Context) WebServerStatus {
	if s.front == nil {
		return WebServerStatus{}
	}
	up, detail := s.front.Up(ctx)
	return WebServerStatus{Managed: true, Up: up, Detail: detail}
}

// Store is what the domain needs of the database; *store.DB satisfies it.
type Store interface {
	CreateInstance(ctx context.Context, inst *store.Instance) error
	GetInstance(ctx context.Context, id string) (*store.Instance, error)
	ListInstances(ctx context.Context) ([]store.Instance, error)
	UpdateInstance(ctx context.Context, inst *store.Instance) error
	DeleteInstance(ctx context.Context, id string) error
	SetDesiredStates(ctx context.Context, ids []string, desired string) error
	AddAudit(ctx context.Context, ev *store.AuditEvent) error
	FindAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error)
}

// Stored phases and desired states.
const (
	PhaseProvisioning = "provisioning"
	PhaseReady        = "ready"
	PhaseRemoving     = "removing"
	// PhasePurging is a removal that also deletes the instance's files: the
	// choice is stored, so a panel killed half way finishes it as asked.
	PhasePurging = "purging"

	DesiredRunning = "running"
	DesiredStopped = "stopped"
)

// actionTimeout bounds one backend action. Actions run detached from the
// caller's context: a client that hangs up must not leave an instance half
// made.
const actionTimeout = 2 * time.Minute

// View is an instance as every client sees it: intent and observed state.
type View struct {
	ID        string            `json:"id"`
	OwnerID   *uint             `json:"owner_id,omitempty"`
	CMS       string            `json:"cms"`
	PHP       string            `json:"php"`
	User      string            `json:"user"`
	Socket    string            `json:"socket"`
	Desired   string            `json:"desired_state"`
	Phase     string            `json:"phase"`
	LastError string            `json:"last_error,omitempty"`
	Spec      procmgr.SpecInput `json:"spec"`
	Status    procmgr.Status    `json:"status"`
	// Health is the health watch's last verdict; nil before the first.
	Health *HealthState `json:"health,omitempty"`
	// Installed is what the create's CMS install made that is shown once
	// (the CMS's admin login); only in the answer to the create.
	Installed *cms.Result `json:"installed,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	// Lost marks a view delivered to a subscriber that fell so far behind
	// that earlier views were dropped: it lists every instance again.
	Lost bool `json:"-"`
}

type entry struct {
	row    store.Instance
	spec   procmgr.Spec
	status procmgr.Status
	// dirty: the reconciler skipped this instance while an action held
	// its lock; it is queued again when the lock is released.
	dirty bool
	// autoStarts are the reconciler's recent starts of this instance
	// (mayAutoStart); a person's start clears them.
	autoStarts []time.Time
	// configStale: the spec changed while the instance was stopped; its
	// config is written at its next start.
	configStale bool
	// health is the health watch's state of the instance.
	health healthWatch
}

// Options configure a Service.
type Options struct {
	Layout procmgr.Layout
	// FrontDoor publishes sites; nil: the panel manages no web server.
	FrontDoor FrontDoor
	// Installer installs CMSs; nil: instances get an empty tree.
	Installer Installer
	Log       *slog.Logger
	Now       func() time.Time
}

// reconcileWorkers is how many instances the reconciler acts on at once
// (each instance's actions stay serialised by its lock): a panel start
// after a reboot brought 1,000 supervised instances back in about 70 s one
// at a time, 32 s with 8.
const reconcileWorkers = 8

// Service carries out every action on instances, for every client.
type Service struct {
	store   Store
	backend Backend
	layout  procmgr.Layout
	log     *slog.Logger
	now     func() time.Time

	mu      sync.RWMutex
	entries map[procmgr.InstanceID]*entry

	// locks serialises actions per instance: a person's action and the
	// reconciler never interleave their intent and backend calls.
	locks    procmgr.Locks
	inflight atomic.Int64 // actions holding a lock
	pending  atomic.Int64 // ids queued for the reconciler and not yet done

	// background counts creates provisioning after BeginCreate returned.
	background sync.WaitGroup
	// refusals counts refusal records being written (auditRefused).
	refusals     sync.WaitGroup
	refusing     atomic.Int64 // the same count, for WaitIdle
	refusalSlots chan struct{}

	front     FrontDoor
	installer Installer
	// claims are domains reserved by a create or a set in flight, so two
	// of them cannot take one domain at once.
	claims map[procmgr.Domain]procmgr.InstanceID

	views procmgr.Fanout[View]
	// dirty holds the ids the reconciler is to look at, each at most once.
	dirty   coalesce.Set[procmgr.InstanceID]
	started chan struct{}
}

// New makes a Service. Call Run to load state and start reconciling.
func New(st Store, b Backend, opt Options) *Service {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	return &Service{
		store:        st,
		backend:      b,
		layout:       opt.Layout,
		log:          log,
		now:          now,
		entries:      map[procmgr.InstanceID]*entry{},
		front:        opt.FrontDoor,
		installer:    opt.Installer,
		claims:       map[procmgr.Domain]procmgr.InstanceID{},
		refusalSlots: make(chan struct{}, maxRefusalWrites),
		started:      make(chan struct{}),
	}
}

// BackendName says which backend runs the instances.
func (s *Service) BackendName() string { return s.backend.Name() }

// Started is closed once Run has loaded the stored and observed state.
func (s *Service) Started() <-chan struct{} { return s.started }

func (s *Service) viewLocked(e *entry) View {
	id := procmgr.InstanceID(e.row.ID)
	return View{
		ID:        e.row.ID,
		OwnerID:   e.row.OwnerID,
		CMS:       e.row.CMS,
		PHP:       e.row.PHPVersion,
		User:      id.UserName(),
		Socket:    s.layout.SocketPath(id),
		Desired:   e.row.DesiredState,
		Phase:     e.row.Phase,
		LastError: e.row.LastError,
		Spec:      e.spec.Input(),
		Status:    e.status,
		Health:    e.health.state,
		CreatedAt: e.row.CreatedAt,
	}
}

func (s *Service) publish(id procmgr.InstanceID) {
	s.mu.RLock()
	e, ok := s.entries[id]
	var v View
	if ok {
		v = s.viewLocked(e)
	}
	s.mu.RUnlock()
	if !ok {
		v = View{ID: string(id), Phase: PhaseRemoved, Status: procmgr.Status{ID: id, State: procmgr.StateAbsent}}
	}
	s.views.PublishMarking(v, markViewLost)
}

func markViewLost(v View) View {
	v.Lost = true
	return v
}

// PhaseRemoved is the phase of the last view published for an instance
// that no longer exists.
const PhaseRemoved = "removed"

// publishGone tells subscribers that id no longer exists; why, when not
// nil, is why (a create that failed and was rolled back).
func (s *Service) publishGone(id procmgr.InstanceID, why error) {
	v := View{ID: string(id), Phase: PhaseRemoved, Status: procmgr.Status{ID: id, State: procmgr.StateAbsent}}
	if why != nil {
		v.LastError = why.Error()
	}
	s.views.PublishMarking(v, markViewLost)
}

// InstalledPHP lists the PHP versions instances may use on this host.
func (s *Service) InstalledPHP() []string {
	vs := s.backend.InstalledPHP()
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Subscribe streams the view of every instance that changes, until ctx ends.
// Callers filter by what their principal may see (CanSee). A subscriber
// that falls procmgr.SubscriberBuffer views behind loses the oldest and gets
// the next view marked Lost: it must List again. Past
// procmgr.MaxSubscribers it fails with procmgr.ErrTooManySubscribers.
func (s *Service) Subscribe(ctx context.Context) (<-chan View, error) { return s.views.Join(ctx) }

// CanSee reports whether p may see v: its status, health, logs and audit
// trail. Admins and support see every instance, customers their own.
func CanSee(p auth.Principal, v View) bool { return accessRead.allowed(p, v.OwnerID) }

// CanPower reports whether p may start, stop, restart and reload v: admins
// and v's owner.
func CanPower(p auth.Principal, v View) bool { return accessPower.allowed(p, v.OwnerID) }

// CanManage reports whether p may create, reconfigure, kill and remove
// instances: admins only.
func CanManage(p auth.Principal) bool { return accessManage.allowed(p, nil) }

// CanAudit reports whether p may read the whole audit log (admins and
// support); anyone who may see an instance may read its own trail.
func CanAudit(p auth.Principal) bool { return p.Role == auth.RoleAdmin || p.Role == auth.RoleSupport }

// access is what an action needs of the caller.
type access int

const (
	accessRead   access = iota // admin, support, owner
	accessPower                // admin, owner: start, stop, restart, reload
	accessManage               // admin only: create, set, kill, remove
)

func (a access) allowed(p auth.Principal, ownerID *uint) bool {
	switch p.Role {
	case auth.RoleAdmin:
		return true
	case auth.RoleSupport:
		return a == accessRead
	case auth.RoleCustomer:
		return a <= accessPower && ownerID != nil && *ownerID == p.UserID
	}
	return false
}

// lookup finds an instance the principal may act on for action. A customer
// asking for someone else's instance is told it does not exist. Every
// refusal of an instance that exists is audited with the result "refused",
// so attempts on other tenants' sites are on record.
func (s *Service) lookup(p auth.Principal, rawID string, a access, action string) (procmgr.InstanceID, error) {
	id, err := procmgr.ParseInstanceID(rawID)
	if err != nil {
		return "", err
	}
	s.mu.RLock()
	e, ok := s.entries[id]
	var owner *uint
	if ok {
		owner = e.row.OwnerID
	}
	s.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	if !accessRead.allowed(p, owner) {
		s.auditRefused(p, action, id, "may not see this instance")
		return "", fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	if !a.allowed(p, owner) {
		s.auditRefused(p, action, id, fmt.Sprintf("role %s may not %s", p.Role, action))
		return "", fmt.Errorf("instance %s: role %s may not do this: %w", id, p.Role, ErrForbidden)
	}
	return id, nil
}

// Get returns one instance.
func (s *Service) Get(ctx context.Context, p auth.Principal, rawID string) (View, error) {
	id, err := s.lookup(p, rawID, accessRead, "view")
	if err != nil {
		return View{}, err
	}
	return s.viewOf(id)
}

// List returns the instances p may see, sorted by id.
func (s *Service) List(ctx context.Context, p auth.Principal) []View {
	s.mu.RLock()
	out := make([]View, 0, len(s.entries))
	for _, e := range s.entries {
		if accessRead.allowed(p, e.row.OwnerID) {
			out = append(out, s.viewLocked(e))
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Audit results.
const (
	ResultOK      = "ok"
	ResultError   = "error"
	ResultRefused = "refused"
)

// audit records an action. A failure to record is logged, not returned:
// the action itself already happened.
func (s *Service) audit(p auth.Principal, action string, id procmgr.InstanceID, err error, detail string) {
	result := ResultOK
	if err != nil {
		result, detail = ResultError, err.Error()
		if errors.Is(err, ErrForbidden) {
			result = ResultRefused
		}
	}
	s.record(p, action, id, result, detail)
}

// maxRefusalWrites bounds the refusal records being written at once; past
// it they are counted in the panel's log instead, so a flood of probes can
// neither grow goroutines nor fill the audit table faster than it writes.
const maxRefusalWrites = 256

// auditRefused records a refusal without making the caller wait for it:
// a refused request answers as fast as one about an instance that does not
// exist, so timing does not tell a customer that someone else's does.
func (s *Service) auditRefused(p auth.Principal, action string, id procmgr.InstanceID, why string) {
	select {
	case s.refusalSlots <- struct{}{}:
	default:
		s.log.Warn("refusal not recorded: too many at once", "instance", string(id), "action", action, "actor", p.Name)
		return
	}
	s.refusals.Add(1)
	s.refusing.Add(1)
	go func() {
		defer func() { <-s.refusalSlots; s.refusing.Add(-1); s.refusals.Done() }()
		s.record(p, action, id, ResultRefused, why)
	}()
}

func (s *Service) record(p auth.Principal, action string, id procmgr.InstanceID, result, detail string) {
	ev := &store.AuditEvent{At: s.now(), Actor: p.Name, Action: action, InstanceID: string(id), Result: result, Detail: detail}
	if p.UserID != 0 {
		uid := p.UserID
		ev.ActorID = &uid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if aerr := s.store.AddAudit(ctx, ev); aerr != nil {
		s.log.Error("audit record lost", "instance", string(id), "action", action, "err", aerr)
	}
	lvl := slog.LevelInfo
	if result != ResultOK {
		lvl = slog.LevelWarn
	}
	s.log.Log(context.Background(), lvl, "action", "instance", string(id), "action", action, "actor", p.Name, "result", result, "detail", detail)
}

// AuditEntry is one audit record as clients see it.
type AuditEntry struct {
	ID         uint64    `json:"id"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`
	ActorID    *uint     `json:"actor_id,omitempty"`
	Action     string    `json:"action"`
	InstanceID string    `json:"instance_id,omitempty"`
	Result     string    `json:"result"`
	Detail     string    `json:"detail,omitempty"`
}

// AuditQuery selects audit entries; empty fields match everything.
type AuditQuery struct {
	Instance string
	Actor    string
	Action   string
	Since    time.Time
	Until    time.Time
	BeforeID uint64
	Limit    int
}

// Audit returns the audit entries q selects, newest first. The whole log is
// for admins and support; an instance's own trail is for whoever may see it.
func (s *Service) Audit(ctx context.Context, p auth.Principal, q AuditQuery) ([]AuditEntry, error) {
	if q.Instance != "" {
		if _, err := s.lookup(p, q.Instance, accessRead, "audit"); err != nil {
			return nil, err
		}
	} else if !CanAudit(p) {
		s.auditRefused(p, "audit", "", fmt.Sprintf("role %s may not read the audit log", p.Role))
		return nil, fmt.Errorf("audit log: %w", ErrForbidden)
	}
	evs, err := s.store.FindAudit(ctx, store.AuditFilter{InstanceID: q.Instance, Actor: q.Actor, Action: q.Action,
		Since: q.Since, Until: q.Until, BeforeID: q.BeforeID, Limit: q.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]AuditEntry, 0, len(evs))
	for _, e := range evs {
		// A customer's trail of their instance leaves out other people's
		// refused attempts on it: who probed is for staff to see.
		if !CanAudit(p) && e.Result == ResultRefused && (e.ActorID == nil || *e.ActorID != p.UserID) {
			continue
		}
		out = append(out, AuditEntry{ID: e.ID, At: e.At, Actor: e.Actor, ActorID: e.ActorID, Action: e.Action,
			InstanceID: e.InstanceID, Result: e.Result, Detail: e.Detail})
	}
	return out, nil
}

// acquire takes id's action lock for an action a person asked for, waiting
// behind the action in flight. The returned func releases it and queues a
// reconcile that was skipped meanwhile.
func (s *Service) acquire(ctx context.Context, id procmgr.InstanceID) (func(), error) {
	unlock, err := s.locks.Lock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("instance %s: waiting for the action in flight: %w", id, err)
	}
	s.inflight.Add(1)
	return func() { s.release(id, unlock) }, nil
}

func (s *Service) release(id procmgr.InstanceID, unlock func()) {
	unlock()
	// Queue before counting the action done, so WaitIdle never sees a
	// moment with nothing in flight and nothing queued in between.
	defer s.inflight.Add(-1)
	s.mu.Lock()
	e, ok := s.entries[id]
	dirty := ok && e.dirty
	if dirty {
		e.dirty = false
	}
	s.mu.Unlock()
	if dirty {
		s.enqueue(id)
	}
}

// entry returns a copy of the parts of id's entry an action needs; ok is
// false if the instance was removed meanwhile.
func (s *Service) entryOf(id procmgr.InstanceID) (row store.Instance, spec procmgr.Spec, st procmgr.Status, stale bool, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.entries[id]
	if !ok {
		return row, spec, st, false, false
	}
	return e.row, e.spec, e.status, e.configStale, true
}

func (s *Service) setConfigStale(id procmgr.InstanceID, stale bool) {
	s.mu.Lock()
	if e, ok := s.entries[id]; ok {
		e.configStale = stale
	}
	s.mu.Unlock()
}

// detached gives a backend action its own deadline, independent of the
// caller's context.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), actionTimeout)
}

// setStatus stores an observed status and publishes the view. A status
// older than the one held (an action's result that an event overtook) is
// dropped.
func (s *Service) setStatus(st procmgr.Status) {
	s.mu.Lock()
	e, ok := s.entries[st.ID]
	if ok && st.Seq != 0 && st.Seq < e.status.Seq {
		ok = false
	}
	if ok {
		e.status = st
	}
	s.mu.Unlock()
	if ok {
		s.publish(st.ID)
	}
}

// saveRow writes an entry's row after f changed it, under the entry lock.
func (s *Service) saveRow(ctx context.Context, id procmgr.InstanceID, f func(*store.Instance)) error {
	s.mu.Lock()
	e, ok := s.entries[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	row := e.row
	f(&row)
	row.Generation++
	s.mu.Unlock()
	if err := s.store.UpdateInstance(ctx, &row); err != nil {
		return fmt.Errorf("instances: record intent for %s: %w", id, err)
	}
	s.mu.Lock()
	if e, ok := s.entries[id]; ok {
		e.row = row
	}
	s.mu.Unlock()
	s.publish(id)
	return nil
}

// claimDomains reserves domains for id: none may be another instance's,
// recorded or being created or changed. The returned func drops the
// reservation; call it once the entry holds the domains, or the change
// failed.
func (s *Service) claimDomains(id procmgr.InstanceID, domains []procmgr.Domain) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs procmgr.FieldErrors
	for _, d := range domains {
		if owner, ok := s.domainOwnerLocked(d); ok && owner != id {
			errs = append(errs, &procmgr.FieldError{Field: "domains", Value: string(d), Rule: "is already a domain of instance " + string(owner)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	mine := []procmgr.Domain{}
	for _, d := range domains {
		if _, held := s.claims[d]; !held {
			s.claims[d] = id
			mine = append(mine, d)
		}
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range mine {
			delete(s.claims, d)
		}
	}, nil
}

func (s *Service) domainOwnerLocked(d procmgr.Domain) (procmgr.InstanceID, bool) {
	if id, ok := s.claims[d]; ok {
		return id, true
	}
	for id, e := range s.entries {
		for _, have := range e.spec.Domains {
			if have == d {
				return id, true
			}
		}
	}
	return "", false
}
