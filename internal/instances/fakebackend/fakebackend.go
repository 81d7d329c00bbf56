// Package fakebackend is an in-memory procmgr.Backend for testing the layers
// above procmgr (the instances service, the web API, the command line). It
// runs nothing: instances are map entries with a state and a made-up PID.
//
// It behaves as the conformance suite (procmgrtest) says a backend behaves
// (Provision is idempotent and leaves the instance running, stopping a
// stopped instance is not an error, Reload and Kill of a stopped instance
// wrap procmgr.ErrConflict, Status of an absent instance wraps
// procmgr.ErrNotFound, ...) and adds hooks for tests: injected failures,
// simulated crashes and crash loops, instances stopped or lost behind the
// panel's back, calls held at a gate, and a record of every call.
//
// Fakes are for the layers above procmgr only; procmgr's own backends are
// tested against the real operating system.
package fakebackend

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// The operation names that FailNext, FailAlways, Hold, Calls and History use:
// the names of the methods of procmgr.Backend and of the optional interfaces
// the fake implements.
const (
	OpProvision   = "Provision"
	OpDeprovision = "Deprovision"
	OpStart       = "Start"
	OpStartMany   = "StartMany"
	OpStop        = "Stop"
	OpRestart     = "Restart"
	OpReload      = "Reload"
	OpKill        = "Kill"
	OpSetLimits   = "SetLimits"
	OpStatus      = "Status"
	OpList        = "List"
	OpHealth      = "Health"
	OpLogs        = "Logs"
	OpFollowLogs  = "FollowLogs"
)

// Name is what Backend.Name returns unless Options.Name says otherwise.
const Name = "fake"

// FirstPID is the first fake PID handed out; each start takes the next one.
const FirstPID = 1000

// MaxLogLines bounds the lines kept per instance; older lines are dropped.
const MaxLogLines = 10000

// Call is one recorded call of a backend method.
type Call struct {
	Op string
	// ID is the instance the call was about; "" for List. For StartMany
	// one Call is recorded per id.
	ID procmgr.InstanceID
	// Spec is the spec given to Provision.
	Spec procmgr.Spec
	// Purge is Deprovision's purge flag.
	Purge bool
	// Signal is the signal given to Kill.
	Signal procmgr.Signal
	// Limits are the limits given to SetLimits.
	Limits procmgr.Limits
	// Err is what the call returned.
	Err error
}

// Options configure a Backend. The zero value is fine.
type Options struct {
	// Name is what Name returns; "" means Name ("fake").
	Name string
	// PHP is what InstalledPHP returns; nil means only 8.2.
	PHP []procmgr.PHPVersion
	// Now stamps events, log lines and Status.Since; nil means time.Now.
	Now func() time.Time
}

type instance struct {
	// unhealthy: the pool fails its health probe with this reason while
	// running (SetUnhealthy).
	unhealthy string
	spec      procmgr.Spec
	status    procmgr.Status
	logs      []procmgr.LogLine
	followers map[chan procmgr.LogLine]struct{}
}

// gate holds calls of one operation until it is released.
type gate struct {
	entered  chan procmgr.InstanceID
	released chan struct{}
}

// Backend is the fake. It is safe for concurrent use. Make one with New.
type Backend struct {
	name string
	php  []procmgr.PHPVersion
	now  func() time.Time

	events procmgr.Fanout[procmgr.Event]

	mu       sync.Mutex
	insts    map[procmgr.InstanceID]*instance
	nextPID  int
	failNext map[string][]error
	failAll  map[string]error
	gates    map[string]*gate
	history  []Call
	closed   bool
	// batchFails counts the batch starts still to fail per instance.
	batchFails map[procmgr.InstanceID]int
	// dropping counts the events DropEvents still keeps from subscribers;
	// lostPending marks the first one after them Lost.
	dropping    int
	lostPending bool
	// changed is closed and replaced on every call and state change, so
	// that waiters wake without polling.
	changed chan struct{}
}

// The fake has every optional power: the batch start and logs the real
// backends have, and its own health answers (there is no socket to probe).
var (
	_ procmgr.Backend      = (*Backend)(nil)
	_ procmgr.BatchStarter = (*Backend)(nil)
	_ procmgr.LogReader    = (*Backend)(nil)
	_ procmgr.HealthProber = (*Backend)(nil)
)

// New returns an empty fake backend: no instances, no failures.
func New(opt Options) *Backend {
	b := &Backend{
		name:     opt.Name,
		php:      opt.PHP,
		now:      opt.Now,
		insts:    map[procmgr.InstanceID]*instance{},
		nextPID:  FirstPID,
		failNext: map[string][]error{},
		failAll:  map[string]error{},
		gates:    map[string]*gate{},
		changed:  make(chan struct{}),
	}
	if b.name == "" {
		b.name = Name
	}
	if b.php == nil {
		b.php = []procmgr.PHPVersion{"8.2"}
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
}

// ---- test hooks ----

// FailNext makes the next call of op return err (wrapped with the op's name,
// so errors.Is still matches err). Several FailNext calls queue up. An op
// that fails changes nothing, as a real backend undoes a failed action.
func (b *Backend) FailNext(op string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext[op] = append(b.failNext[op], err)
}

// FailAlways makes every call of op return err until FailAlways(op, nil).
func (b *Backend) FailAlways(op string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		delete(b.failAll, op)
		return
	}
	b.failAll[op] = err
}

// Hold makes calls of op wait, before they do anything, until release is
// called (or their context ends, which they then return). Each held call
// sends its instance id on entered (buffered; a call that finds it full does
// not block on it). release is idempotent; it also ends the hold, so later
// calls of op go straight through.
func (b *Backend) Hold(op string) (entered <-chan procmgr.InstanceID, release func()) {
	g := &gate{entered: make(chan procmgr.InstanceID, 64), released: make(chan struct{})}
	b.mu.Lock()
	b.gates[op] = g
	b.mu.Unlock()
	var once sync.Once
	return g.entered, func() {
		once.Do(func() {
			b.mu.Lock()
			if b.gates[op] == g {
				delete(b.gates, op)
			}
			b.mu.Unlock()
			close(g.released)
		})
	}
}

// Seed puts an instance on the fake host without a call being recorded and
// without an event: the host as it was before the panel started. state is
// one of running, stopped, failed or crash-looping; running gets a new PID.
func (b *Backend) Seed(spec procmgr.Spec, state procmgr.State) procmgr.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	in := &instance{spec: spec, followers: map[chan procmgr.LogLine]struct{}{}}
	in.status = procmgr.Status{ID: spec.ID, Backend: b.name, Limits: spec.Limits}
	b.insts[spec.ID] = in
	b.setStateLocked(in, state)
	b.notifyLocked()
	return in.status
}

// Crash simulates the master dying and the backend restarting it: an event
// with state crash-looping and no PID, then one with state running, a new
// PID and Restarts one higher. It returns the new status, or an error if the
// instance is absent or not running.
func (b *Backend) Crash(id procmgr.InstanceID) (procmgr.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, fmt.Errorf("fakebackend: crash %s: %w", id, procmgr.ErrNotFound)
	}
	if in.status.State != procmgr.StateRunning {
		return procmgr.Status{}, fmt.Errorf("fakebackend: crash %s: state %s: %w", id, in.status.State, procmgr.ErrConflict)
	}
	b.crashLocked(in)
	return in.status, nil
}

// crashLocked is a master killed and started again by the restart policy.
func (b *Backend) crashLocked(in *instance) {
	in.status.LastExit = &procmgr.ExitInfo{Result: "signal", Signal: "KILL"}
	b.setStateLocked(in, procmgr.StateCrashLooping)
	b.publishLocked(in)
	in.status.Restarts++
	b.setStateLocked(in, procmgr.StateRunning)
	b.publishLocked(in)
	b.notifyLocked()
}

// SetUnhealthy makes a running instance's pool fail its health probe with
// reason (one naming SIGSTOP reads as a frozen master) until the master is
// killed or restarted; "" makes it healthy again.
func (b *Backend) SetUnhealthy(id procmgr.InstanceID, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if in, ok := b.insts[id]; ok {
		in.unhealthy = reason
	}
}

// CrashLoopEnd simulates a crash loop that hit the start limit: an event with
// state crash-looping, then one with state failed, no PID and LastExit
// start-limit-hit. The instance stays failed until Start, Restart or a
// Provision. It returns the failed status.
func (b *Backend) CrashLoopEnd(id procmgr.InstanceID) (procmgr.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, fmt.Errorf("fakebackend: crash loop %s: %w", id, procmgr.ErrNotFound)
	}
	in.status.LastExit = &procmgr.ExitInfo{Result: "signal", Signal: "KILL"}
	b.setStateLocked(in, procmgr.StateCrashLooping)
	in.status.Restarts += 5
	b.publishLocked(in)
	in.status.LastExit = &procmgr.ExitInfo{Result: "start-limit-hit"}
	b.setStateLocked(in, procmgr.StateFailed)
	b.publishLocked(in)
	b.notifyLocked()
	return in.status, nil
}

// StopExternally simulates someone stopping the instance behind the panel's
// back (systemctl stop): state stopped, no PID, published as an event.
func (b *Backend) StopExternally(id procmgr.InstanceID) (procmgr.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, fmt.Errorf("fakebackend: stop %s externally: %w", id, procmgr.ErrNotFound)
	}
	b.setStateLocked(in, procmgr.StateStopped)
	b.publishLocked(in)
	b.notifyLocked()
	return in.status, nil
}

// Lose simulates the host losing the instance (a wiped or restored machine):
// it becomes absent, published as an event with state absent.
func (b *Backend) Lose(id procmgr.InstanceID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return
	}
	b.removeLocked(id, in)
	b.notifyLocked()
}

// AddLog appends a line (cut as procmgr.BoundLine cuts) to the instance's
// log and hands it to its followers (a follower whose buffer is full loses
// the line).
func (b *Backend) AddLog(id procmgr.InstanceID, text string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return fmt.Errorf("fakebackend: log %s: %w", id, procmgr.ErrNotFound)
	}
	line := procmgr.LogLine{At: b.now(), Text: procmgr.BoundLine(text)}
	in.logs = append(in.logs, line)
	if len(in.logs) > MaxLogLines {
		in.logs = in.logs[len(in.logs)-MaxLogLines:]
	}
	for ch := range in.followers {
		select {
		case ch <- line:
		default:
		}
	}
	b.notifyLocked()
	return nil
}

// Followers is the number of FollowLogs streams still open, for leak checks.
func (b *Backend) Followers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, in := range b.insts {
		n += len(in.followers)
	}
	return n
}

// Spec returns the spec the instance was last provisioned with, with the
// limits SetLimits applied since.
func (b *Backend) Spec(id procmgr.InstanceID) (procmgr.Spec, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Spec{}, false
	}
	return in.spec, true
}

// Has reports whether the instance exists on the fake host.
func (b *Backend) Has(id procmgr.InstanceID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.insts[id]
	return ok
}

// State returns the instance's state, absent if the host lacks it.
func (b *Backend) State(id procmgr.InstanceID) procmgr.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if in, ok := b.insts[id]; ok {
		return in.status.State
	}
	return procmgr.StateAbsent
}

// Calls counts the calls of op so far, failed ones included.
func (b *Backend) Calls(op string) int {
	return b.CallsFor(op, "")
}

// CallsFor counts the calls of op about instance id ("" = any instance).
func (b *Backend) CallsFor(op string, id procmgr.InstanceID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.history {
		if c.Op == op && (id == "" || c.ID == id) {
			n++
		}
	}
	return n
}

// TotalCalls counts every recorded call that changes or could change an
// instance (every op but Status, List, Health, Logs and FollowLogs).
func (b *Backend) TotalCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.history {
		switch c.Op {
		case OpStatus, OpList, OpHealth, OpLogs, OpFollowLogs:
		default:
			n++
		}
	}
	return n
}

// History returns every recorded call, oldest first.
func (b *Backend) History() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Call(nil), b.history...)
}

// ResetCalls forgets the recorded calls.
func (b *Backend) ResetCalls() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.history = nil
}

// WaitCalls waits until op has been called at least n times for id ("" =
// any instance), or ctx ends.
func (b *Backend) WaitCalls(ctx context.Context, op string, id procmgr.InstanceID, n int) error {
	return b.waitFor(ctx, func() bool {
		k := 0
		for _, c := range b.history {
			if c.Op == op && (id == "" || c.ID == id) {
				k++
			}
		}
		return k >= n
	}, func() string {
		return fmt.Sprintf("%s called for %q fewer than %d times", op, id, n)
	})
}

// WaitState waits until the instance is in state (absent: gone), or ctx ends.
func (b *Backend) WaitState(ctx context.Context, id procmgr.InstanceID, state procmgr.State) error {
	return b.waitFor(ctx, func() bool {
		in, ok := b.insts[id]
		if !ok {
			return state == procmgr.StateAbsent
		}
		return in.status.State == state
	}, func() string { return fmt.Sprintf("%s never reached state %s", id, state) })
}

// waitFor waits until cond (run under b.mu) holds or ctx ends.
func (b *Backend) waitFor(ctx context.Context, cond func() bool, what func() string) error {
	for {
		b.mu.Lock()
		ok := cond()
		ch := b.changed
		b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			msg := what()
			b.mu.Unlock()
			return fmt.Errorf("fakebackend: %s: %w", msg, ctx.Err())
		}
	}
}

// ---- internals ----

func (b *Backend) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// enter records a call, holds it at a gate if there is one, and returns the
// injected failure for op, if any. The caller must not hold b.mu.
func (b *Backend) enter(ctx context.Context, c Call) error {
	b.mu.Lock()
	g := b.gates[c.Op]
	b.mu.Unlock()
	if g != nil {
		select {
		case g.entered <- c.ID:
		default:
		}
		select {
		case <-g.released:
		case <-ctx.Done():
			return b.finish(c, fmt.Errorf("fakebackend: %s %s: %w", c.Op, c.ID, ctx.Err()))
		}
	}
	if err := ctx.Err(); err != nil {
		return b.finish(c, fmt.Errorf("fakebackend: %s %s: %w", c.Op, c.ID, err))
	}
	b.mu.Lock()
	var err error
	if q := b.failNext[c.Op]; len(q) > 0 {
		err = q[0]
		b.failNext[c.Op] = q[1:]
	} else if e, ok := b.failAll[c.Op]; ok {
		err = e
	}
	b.mu.Unlock()
	if err != nil {
		return b.finish(c, fmt.Errorf("fakebackend: %s %s: %w", c.Op, c.ID, err))
	}
	return nil
}

// finish records a call with its result and returns err.
func (b *Backend) finish(c Call, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c.Err = err
	b.history = append(b.history, c)
	b.notifyLocked()
	return err
}

func (b *Backend) finishLocked(c Call, err error) error {
	c.Err = err
	b.history = append(b.history, c)
	b.notifyLocked()
	return err
}

func (b *Backend) setStateLocked(in *instance, st procmgr.State) {
	if st != procmgr.StateRunning {
		in.unhealthy = "" // a new master, or none
	}
	in.status.State = st
	in.status.Since = b.now()
	in.status.ActiveState, in.status.SubState = activeState(st)
	switch st {
	case procmgr.StateRunning, procmgr.StateReloading:
		if in.status.MainPID == 0 {
			in.status.MainPID = b.nextPID
			b.nextPID++
		}
		in.status.Tasks = 2
		in.status.MemoryBytes = 6 << 20
	default:
		in.status.MainPID = 0
		in.status.Tasks = 0
		in.status.MemoryBytes = 0
	}
}

// restartLocked gives a running instance a new PID.
func (b *Backend) restartLocked(in *instance) {
	in.status.MainPID = 0
	b.setStateLocked(in, procmgr.StateRunning)
}

func activeState(st procmgr.State) (string, string) {
	switch st {
	case procmgr.StateRunning:
		return "active", "running"
	case procmgr.StateReloading:
		return "reloading", "reload"
	case procmgr.StateStopped:
		return "inactive", "dead"
	case procmgr.StateFailed:
		return "failed", "failed"
	case procmgr.StateCrashLooping:
		return "activating", "auto-restart"
	}
	return "", ""
}

func (b *Backend) publishLocked(in *instance) {
	st := in.status
	st.Notes = append([]string(nil), st.Notes...)
	b.emitLocked(procmgr.Event{Status: st, At: b.now()})
}

// emitLocked publishes ev, unless DropEvents keeps it from subscribers.
func (b *Backend) emitLocked(ev procmgr.Event) {
	if b.dropping > 0 {
		b.dropping--
		b.lostPending = true
		return
	}
	if b.lostPending {
		ev.Lost, b.lostPending = true, false
	}
	b.events.Publish(ev)
}

func (b *Backend) removeLocked(id procmgr.InstanceID, in *instance) {
	delete(b.insts, id)
	for ch := range in.followers {
		delete(in.followers, ch)
		close(ch)
	}
	b.emitLocked(procmgr.Event{Status: procmgr.Status{ID: id, State: procmgr.StateAbsent, Backend: b.name}, At: b.now()})
}

func notFound(op string, id procmgr.InstanceID) error {
	return fmt.Errorf("fakebackend: %s %s: %w", op, id, procmgr.ErrNotFound)
}

// ---- procmgr.Backend ----

// Name returns Options.Name, "fake" by default.
func (b *Backend) Name() string { return b.name }

// Provision makes the instance exist as spec says and leaves it running. An
// instance that already runs with spec is left alone (same PID); a changed
// spec keeps the PID too (a graceful reload); a stopped or failed instance is
// started with a new PID. One event is published with the final status,
// unless nothing changed.
func (b *Backend) Provision(ctx context.Context, spec procmgr.Spec) (procmgr.Status, error) {
	c := Call{Op: OpProvision, ID: spec.ID, Spec: spec}
	if err := b.enter(ctx, c); err != nil {
		return procmgr.Status{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[spec.ID]
	if !ok {
		in = &instance{spec: spec, followers: map[chan procmgr.LogLine]struct{}{}}
		in.status = procmgr.Status{ID: spec.ID, Backend: b.name}
		b.insts[spec.ID] = in
	}
	changed := !ok || !specEqual(in.spec, spec) || in.status.State != procmgr.StateRunning
	in.spec = spec
	in.status.Limits = spec.Limits
	if in.status.State != procmgr.StateRunning {
		b.setStateLocked(in, procmgr.StateRunning)
	}
	if changed {
		b.publishLocked(in)
	}
	return in.status, b.finishLocked(c, nil)
}

func specEqual(a, b procmgr.Spec) bool {
	if a.ID != b.ID || a.CMS != b.CMS || a.PHP != b.PHP || a.Pool != b.Pool || a.Limits != b.Limits || len(a.Env) != len(b.Env) {
		return false
	}
	for i := range a.Env {
		if a.Env[i] != b.Env[i] {
			return false
		}
	}
	return true
}

// Deprovision removes the instance and closes its log followers; an absent
// instance is not an error. An event with state absent is published.
func (b *Backend) Deprovision(ctx context.Context, id procmgr.InstanceID, purge bool) error {
	c := Call{Op: OpDeprovision, ID: id, Purge: purge}
	if err := b.enter(ctx, c); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if in, ok := b.insts[id]; ok {
		b.removeLocked(id, in)
	}
	return b.finishLocked(c, nil)
}

// Start starts a stopped or failed instance with a new PID; a running one is
// left alone. An absent instance wraps procmgr.ErrNotFound.
func (b *Backend) Start(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	c := Call{Op: OpStart, ID: id}
	if err := b.enter(ctx, c); err != nil {
		return procmgr.Status{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.startLocked(id)
	return st, b.finishLocked(c, err)
}

func (b *Backend) startLocked(id procmgr.InstanceID) (procmgr.Status, error) {
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, notFound(OpStart, id)
	}
	if in.status.State != procmgr.StateRunning {
		b.setStateLocked(in, procmgr.StateRunning)
		b.publishLocked(in)
	}
	return in.status, nil
}

// StartMany starts each instance as Start does. One Call per id is recorded;
// an injected failure (FailNext(OpStartMany)) fails the whole batch, and
// FailInBatch fails one instance in it. The result has one error per id.
func (b *Backend) StartMany(ctx context.Context, ids []procmgr.InstanceID) []error {
	errs := make([]error, len(ids))
	if err := b.enter(ctx, Call{Op: OpStartMany}); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, id := range ids {
		var err error
		if n := b.batchFails[id]; n > 0 {
			b.batchFails[id] = n - 1
			err = fmt.Errorf("fake: start %s: job failed (timed out under load)", id)
		} else {
			_, err = b.startLocked(id)
		}
		b.history = append(b.history, Call{Op: OpStartMany, ID: id, Err: err})
		errs[i] = err
	}
	b.notifyLocked()
	return errs
}

// FailInBatch makes the next n batch starts of id fail as a start job that
// timed out under load does, leaving the instance stopped.
func (b *Backend) FailInBatch(id procmgr.InstanceID, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batchFails == nil {
		b.batchFails = map[procmgr.InstanceID]int{}
	}
	b.batchFails[id] = n
}

// Stop stops the instance (no PID); a stopped one is left alone. An absent
// instance wraps procmgr.ErrNotFound.
func (b *Backend) Stop(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.onInstance(ctx, OpStop, id, func(in *instance) error {
		if in.status.State != procmgr.StateStopped {
			b.setStateLocked(in, procmgr.StateStopped)
			b.publishLocked(in)
		}
		return nil
	})
}

// Restart gives the instance a new PID, starting it if it was not running.
// An absent instance wraps procmgr.ErrNotFound.
func (b *Backend) Restart(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.onInstance(ctx, OpRestart, id, func(in *instance) error {
		b.restartLocked(in)
		b.publishLocked(in)
		return nil
	})
}

// Reload keeps the PID of a running instance. An instance that is not
// running wraps procmgr.ErrConflict; an absent one procmgr.ErrNotFound.
func (b *Backend) Reload(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.onInstance(ctx, OpReload, id, func(in *instance) error {
		if in.status.State != procmgr.StateRunning {
			return fmt.Errorf("fakebackend: reload %s: state %s: %w", id, in.status.State, procmgr.ErrConflict)
		}
		return nil
	})
}

// Kill records the signal and changes nothing (use Crash to simulate what a
// fatal signal does). An instance with no running master wraps
// procmgr.ErrConflict; an absent one procmgr.ErrNotFound. Kill is never held
// behind other calls, but Hold(OpKill) holds it.
func (b *Backend) Kill(ctx context.Context, id procmgr.InstanceID, sig procmgr.Signal) error {
	c := Call{Op: OpKill, ID: id, Signal: sig}
	if err := b.enter(ctx, c); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return b.finishLocked(c, notFound(OpKill, id))
	}
	if in.status.MainPID == 0 {
		return b.finishLocked(c, fmt.Errorf("fakebackend: kill %s: no running master: %w", id, procmgr.ErrConflict))
	}
	if sig == procmgr.SigKILL && in.status.State == procmgr.StateRunning {
		// As the real backends' restart policy does: the master dies and
		// is started again (a crash).
		b.crashLocked(in)
	}
	return b.finishLocked(c, nil)
}

// SetLimits applies lim to a running or stopped instance, without changing
// its state or PID, and publishes the new status.
func (b *Backend) SetLimits(ctx context.Context, id procmgr.InstanceID, lim procmgr.Limits) (procmgr.Status, error) {
	c := Call{Op: OpSetLimits, ID: id, Limits: lim}
	if err := b.enter(ctx, c); err != nil {
		return procmgr.Status{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, b.finishLocked(c, notFound(OpSetLimits, id))
	}
	in.spec.Limits = lim
	if in.status.Limits != lim {
		in.status.Limits = lim
		b.publishLocked(in)
	}
	return in.status, b.finishLocked(c, nil)
}

// Status reports the instance; an absent one wraps procmgr.ErrNotFound.
func (b *Backend) Status(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	c := Call{Op: OpStatus, ID: id}
	if err := b.enter(ctx, c); err != nil {
		return procmgr.Status{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, b.finishLocked(c, notFound(OpStatus, id))
	}
	return in.status, b.finishLocked(c, nil)
}

// List reports every instance on the fake host, sorted by id.
func (b *Backend) List(ctx context.Context) ([]procmgr.Status, error) {
	c := Call{Op: OpList}
	if err := b.enter(ctx, c); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]procmgr.Status, 0, len(b.insts))
	for _, in := range b.insts {
		out = append(out, in.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, b.finishLocked(c, nil)
}

// Health says a running instance is healthy and any other is not, with the
// state as the reason. An absent instance wraps procmgr.ErrNotFound.
func (b *Backend) Health(ctx context.Context, id procmgr.InstanceID) (procmgr.Health, error) {
	c := Call{Op: OpHealth, ID: id}
	if err := b.enter(ctx, c); err != nil {
		return procmgr.Health{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Health{}, b.finishLocked(c, notFound(OpHealth, id))
	}
	h := procmgr.Health{CheckedAt: b.now()}
	if in.status.State == procmgr.StateRunning && in.unhealthy != "" {
		h.Reason = in.unhealthy
		h.MasterStopped = strings.Contains(in.unhealthy, "SIGSTOP")
	} else if in.status.State == procmgr.StateRunning {
		h.Healthy = true
		h.PingLatency = time.Millisecond
		h.Pool = &procmgr.PoolStatus{Pool: string(id), ProcessManager: string(in.spec.Pool.PM), IdleProcesses: 1, TotalProcesses: 1}
	} else {
		h.Reason = "ping: instance is " + string(in.status.State)
	}
	return h, b.finishLocked(c, nil)
}

// Logs returns up to n of the last lines added with AddLog, oldest first. An
// absent instance wraps procmgr.ErrNotFound.
func (b *Backend) Logs(ctx context.Context, id procmgr.InstanceID, n int) ([]procmgr.LogLine, error) {
	c := Call{Op: OpLogs, ID: id}
	if err := b.enter(ctx, c); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return nil, b.finishLocked(c, notFound(OpLogs, id))
	}
	return lastLines(in.logs, n), b.finishLocked(c, nil)
}

func lastLines(logs []procmgr.LogLine, n int) []procmgr.LogLine {
	if n < 0 {
		n = 0
	}
	if n > len(logs) {
		n = len(logs)
	}
	return append([]procmgr.LogLine(nil), logs[len(logs)-n:]...)
}

// FollowLogs sends the last n lines, then every line AddLog adds, until ctx
// ends, the instance is deprovisioned or the backend is closed; the channel
// is closed then. A follower more than procmgr.FollowBuffer lines behind
// loses new lines.
func (b *Backend) FollowLogs(ctx context.Context, id procmgr.InstanceID, n int) (<-chan procmgr.LogLine, error) {
	c := Call{Op: OpFollowLogs, ID: id}
	if err := b.enter(ctx, c); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return nil, b.finishLocked(c, notFound(OpFollowLogs, id))
	}
	first := lastLines(in.logs, n)
	ch := make(chan procmgr.LogLine, len(first)+procmgr.FollowBuffer)
	for _, l := range first {
		ch <- l
	}
	if b.closed {
		close(ch)
		return ch, b.finishLocked(c, nil)
	}
	in.followers[ch] = struct{}{}
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		defer b.mu.Unlock()
		// The instance may have been removed (and ch closed) meanwhile.
		if _, ok := in.followers[ch]; ok {
			delete(in.followers, ch)
			close(ch)
			b.notifyLocked()
		}
	}()
	return ch, b.finishLocked(c, nil)
}

// Subscribe returns the events of every instance until ctx ends or Close.
// It fails as procmgr.Fanout does: past procmgr.MaxSubscribers, and after
// Close.
func (b *Backend) Subscribe(ctx context.Context) (<-chan procmgr.Event, error) {
	return b.events.Join(ctx)
}

// Publish sends an arbitrary event, for tests that need a status the hooks
// above do not make. The fake's own state is not changed.
func (b *Backend) Publish(st procmgr.Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.emitLocked(procmgr.Event{Status: st, At: b.now()})
}

// DropEvents simulates subscribers that fell behind: the next n events
// reach no subscriber, and the first one after them is marked Lost, as a
// real backend's subscriber receives after a gap.
func (b *Backend) DropEvents(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropping += n
}

// InstalledPHP returns Options.PHP, 8.2 by default.
func (b *Backend) InstalledPHP() []procmgr.PHPVersion {
	return append([]procmgr.PHPVersion(nil), b.php...)
}

// Close closes every subscriber's channel and every log stream. The
// instances stay, as real ones keep running.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.events.Close()
	for _, in := range b.insts {
		for ch := range in.followers {
			delete(in.followers, ch)
			close(ch)
		}
	}
	b.notifyLocked()
	return nil
}

// onInstance is the shape of every per-instance operation: the call is
// recorded (and may be held or failed by the test), then f runs on the
// instance under the lock; an absent instance wraps procmgr.ErrNotFound.
func (b *Backend) onInstance(ctx context.Context, op string, id procmgr.InstanceID, f func(in *instance) error) (procmgr.Status, error) {
	c := Call{Op: op, ID: id}
	if err := b.enter(ctx, c); err != nil {
		return procmgr.Status{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in, ok := b.insts[id]
	if !ok {
		return procmgr.Status{}, b.finishLocked(c, notFound(op, id))
	}
	if err := f(in); err != nil {
		return procmgr.Status{}, b.finishLocked(c, err)
	}
	return in.status, b.finishLocked(c, nil)
}
