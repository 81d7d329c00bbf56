// Package supervise is the procmgr.Backend for hosts without systemd:
// containers (Dockerfile.dev), CI machines, WSL.
//
// The panel itself runs each instance's php-fpm master, with the same
// rendered config as under systemd (except that errors go to stderr), as the
// instance's user, in its own process group, and where the host allows in
// its own cgroups. It mirrors the systemd unit's policy: restart on failure,
// at most 5 starts in 10 s, then failed with result start-limit-hit until a
// person starts it again. Masters outlive the panel: a new panel adopts the
// ones still running (after checking that the PID is still the same process,
// ours, and a php-fpm master of that instance) and starts the ones that died.
package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// Defaults of Options.
const (
	DefaultStateDir     = "/run/ikabud-supervise"
	DefaultLogDir       = "/var/log/ikabud"
	DefaultCgroupParent = "ikabud"
	DefaultCgroupRoot   = "/sys/fs/cgroup"
)

// The restart policy, the same as the systemd unit's (docs/decisions.md,
// "Restart policy"), and the time limits of each action.
const (
	// restartDelayAfterFirst is the pause before an automatic restart that follows
	// another one; see restartDelay for the first.
	restartDelayAfterFirst = 100 * time.Millisecond
	// startLimitBurst starts within startLimitInterval are allowed; the
	// crash after them leaves the instance failed.
	startLimitBurst    = 5
	startLimitInterval = 10 * time.Second
	// readyTimeout bounds the wait for a new master's first pong; a master
	// that does not answer by then is killed, like a systemd start timeout.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long a graceful stop (SIGQUIT) may take before the
	// whole process group is killed (systemd's TimeoutStopSec).
	stopTimeout = 30 * time.Second
	// quitRepeat is how often SIGQUIT is sent again during a stop.
	quitRepeat = 100 * time.Millisecond
	// reloadTimeout bounds a reload: re-exec, old workers gone, a pong.
	reloadTimeout = 10 * time.Second
	// goneTimeout bounds the wait for killed processes to disappear.
	goneTimeout = 2 * time.Second
	// startManyParallel bounds the masters StartMany starts at once.
	startManyParallel = 16
	// usageInterval is how often memory, CPU and tasks of running
	// instances are read from their cgroups and published when changed.
	usageInterval = 5 * time.Second
)

// Options configure a Backend.
type Options struct {
	// Layout says where instances live; the same as the systemd backend's.
	Layout procmgr.Layout
	// Log receives the backend's own lines (nil: discarded).
	Log *slog.Logger
	// StateDir holds a state file and the output FIFO of each instance.
	// Root only (0700). Default DefaultStateDir: it is on /run because
	// what it records (PIDs) does not survive a reboot either.
	StateDir string
	// LogDir holds each instance's log file. Root only (0700). Default
	// DefaultLogDir.
	LogDir string
	// CgroupParent is the cgroup, under each hierarchy's root, that holds
	// one cgroup per instance. Default DefaultCgroupParent; tests pass
	// their own.
	CgroupParent string
	// CgroupRoot is where the cgroup hierarchies are mounted. Default
	// DefaultCgroupRoot; a directory that holds none makes every limit
	// noted as not enforced (tests use that).
	CgroupRoot string
}

var cgroupParentRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$`)

// Backend runs instances' php-fpm masters as children of the panel.
type Backend struct {
	// seq numbers the statuses this backend makes (procmgr.Status.Seq).
	seq   atomic.Uint64
	host  *procmgr.Host
	log   *slog.Logger
	opt   Options
	cg    *cgroups
	locks procmgr.Locks
	fan   procmgr.Fanout[procmgr.Event]

	// life ends with Close: automatic restarts and readiness waits stop.
	life   context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the backend starts, so Close can wait.
	wg sync.WaitGroup

	mu     sync.Mutex
	closed bool
	inst   map[procmgr.InstanceID]*instance
}

// instance is what the backend knows of one instance.
type instance struct {
	id   procmgr.InstanceID
	sink *logSink
	// saveMu orders state file writes: each write snapshots the state
	// while holding it, so a later snapshot is never overwritten by an
	// earlier one.
	saveMu sync.Mutex

	// Guarded by Backend.mu.
	state    procmgr.State
	since    time.Time
	m        *master // the running master; nil when none
	restarts int
	lastExit *procmgr.ExitInfo
	limits   procmgr.Limits
	notes    []string
	usage    usage
	// starts are the start times within the start-limit interval.
	starts []time.Time
	// tok is bumped by every person's action; an automatic restart
	// scheduled under an older token is dropped.
	tok     uint64
	removed bool
	lastPub *procmgr.Status
}

// New prepares the state and log directories and the cgroups, then adopts
// the masters that an earlier panel left running and starts again those that
// were running but died. It returns when every instance is in its place.
func New(ctx context.Context, opt Options) (*Backend, error) {
	if opt.StateDir == "" {
		opt.StateDir = DefaultStateDir
	}
	if opt.LogDir == "" {
		opt.LogDir = DefaultLogDir
	}
	if opt.CgroupParent == "" {
		opt.CgroupParent = DefaultCgroupParent
	}
	if opt.CgroupRoot == "" {
		opt.CgroupRoot = DefaultCgroupRoot
	}
	if !cgroupParentRe.MatchString(opt.CgroupParent) {
		return nil, fmt.Errorf("supervise: cgroup parent %q: must be path segments of letters, digits, '.', '_' and '-': %w", opt.CgroupParent, procmgr.ErrInvalid)
	}
	for _, d := range []string{opt.StateDir, opt.LogDir, opt.CgroupRoot} {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return nil, fmt.Errorf("supervise: %q: must be a clean absolute path: %w", d, procmgr.ErrInvalid)
		}
	}
	host, err := procmgr.NewHost(opt.Layout)
	if err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	// The master's stderr is a FIFO the panel reads.
	host.FPM = procmgr.FPMOptions{ErrorLog: procmgr.ErrorLogStderr}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("backend", "supervise")

	// The one piece of process-wide state: SIGPIPE is ignored. Masters
	// write into a FIFO that only the panel reads; the ignored disposition
	// is inherited across exec, so a master that writes while no panel
	// reads (the panel is restarting) gets EPIPE instead of dying.
	// (php-fpm 8.2 ignores SIGPIPE itself once running; this also covers
	// what happens before, and other versions.) For the panel it only
	// means a write to a closed pipe returns EPIPE, which Go reports anyway.
	signal.Ignore(syscall.SIGPIPE)

	for _, d := range []string{opt.StateDir, opt.LogDir} {
		if err := ensurePrivateDir(d); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opt.Layout.RuntimeRoot, 0o755); err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	b := &Backend{
		host: host,
		log:  log,
		opt:  opt,
		cg:   detectCgroups(opt.CgroupRoot, opt.CgroupParent, log),
		inst: map[procmgr.InstanceID]*instance{},
	}
	b.life, b.cancel = context.WithCancel(context.Background())
	for lim, note := range b.cg.hostNotes {
		log.Warn("limit not enforced on this host", "limit", lim, "why", note)
	}
	if err := b.recover(ctx); err != nil {
		b.Close()
		return nil, err
	}
	b.wg.Add(1)
	go b.usageLoop()
	return b, nil
}

// ensurePrivateDir makes a root-only directory, refusing a symlink in its
// place.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("supervise: %s is not a directory: %w", dir, procmgr.ErrConflict)
	}
	if err := os.Lchown(dir, 0, 0); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	return nil
}

// Name implements procmgr.Backend.
func (b *Backend) Name() string { return "supervise" }

// InstalledPHP implements procmgr.Backend.
func (b *Backend) InstalledPHP() []procmgr.PHPVersion { return procmgr.InstalledPHP() }

// Close implements procmgr.Backend. Masters keep running and serving. With
// no reader on their FIFOs, what they write meanwhile is lost (EPIPE, which
// they survive); the next panel adopts them and reads their FIFOs again. A
// pending automatic restart is left to that panel too.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	insts := make([]*instance, 0, len(b.inst))
	for _, in := range b.inst {
		insts = append(insts, in)
	}
	b.mu.Unlock()
	b.cancel()
	for _, in := range insts {
		b.mu.Lock()
		m := in.m
		b.mu.Unlock()
		if m != nil {
			// Stops the watcher without reaping: the master lives on.
			m.pidf.Close()
		}
		in.sink.close()
	}
	b.wg.Wait()
	b.fan.Close()
	return nil
}

func (b *Backend) logFor(id procmgr.InstanceID, action string) *slog.Logger {
	return b.log.With("instance", string(id), "action", action)
}

// instance returns the entry of id, making it (stopped) if needed.
func (b *Backend) instance(id procmgr.InstanceID) *instance {
	b.mu.Lock()
	defer b.mu.Unlock()
	if in := b.inst[id]; in != nil {
		return in
	}
	in := &instance{
		id:    id,
		sink:  newLogSink(id, b.opt.StateDir, b.opt.LogDir, b.log, &b.wg),
		state: procmgr.StateStopped,
		since: time.Now(),
	}
	if b.closed {
		in.sink.close()
	}
	b.inst[id] = in
	return in
}

func (b *Backend) checkProvisioned(id procmgr.InstanceID) error {
	if !b.host.ConfigExists(id) {
		return fmt.Errorf("supervise: %s: %w", id, procmgr.ErrNotFound)
	}
	return nil
}

func (b *Backend) lock(ctx context.Context, id procmgr.InstanceID) (func(), error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		// Its watchers are gone: an action now could not see its master end.
		return nil, fmt.Errorf("supervise: %s: backend closed", id)
	}
	unlock, err := b.locks.Lock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("supervise: %s: waiting for another action: %w", id, err)
	}
	return unlock, nil
}

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
	b.fan.Publish(procmgr.Event{Status: procmgr.Status{ID: id, State: procmgr.StateAbsent, Backend: b.Name()}, At: time.Now()})
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

// StartMany implements procmgr.Backend: up to startManyParallel masters
// start at once, each waited for until it answers a ping.
func (b *Backend) StartMany(ctx context.Context, ids []procmgr.InstanceID) error {
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
	return errors.Join(errs...)
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
	if err := b.checkProvisioned(id); err != nil {
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
	if err := b.checkProvisioned(id); err != nil {
		return procmgr.Status{}, err
	}
	unlock, err := b.lock(ctx, id)
	if err != nil {
		return procmgr.Status{}, err
	}
	defer unlock()
	inst := b.instance(id)
	if err := f(inst); err != nil {
		return procmgr.Status{}, err
	}
	return b.snapshot(inst), nil
}

// Status implements procmgr.Backend. It reads memory, plus the instance's
// cgroup usage files.
func (b *Backend) Status(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	if err := b.checkProvisioned(id); err != nil {
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

// Health implements procmgr.Backend.
func (b *Backend) Health(ctx context.Context, id procmgr.InstanceID) (procmgr.Health, error) {
	if err := b.checkProvisioned(id); err != nil {
		return procmgr.Health{}, err
	}
	inst := b.instance(id)
	b.mu.Lock()
	pid := 0
	if inst.m != nil {
		pid = inst.m.pid
	}
	b.mu.Unlock()
	if pid == 0 {
		return procmgr.Health{CheckedAt: time.Now(), Reason: "no master running"}, nil
	}
	// The socket must be served by the master itself: its directory is
	// the instance's to write.
	return procmgr.CheckInstanceHealth(ctx, b.host.Layout.SocketPath(id), pid), nil
}

// Logs implements procmgr.Backend.
func (b *Backend) Logs(ctx context.Context, id procmgr.InstanceID, n int) ([]procmgr.LogLine, error) {
	if err := b.checkProvisioned(id); err != nil {
		return nil, err
	}
	return b.instance(id).sink.last(clampLines(n)), nil
}

// FollowLogs implements procmgr.Backend. The channel holds the backlog and
// followBuffer more lines; a reader that falls behind loses the oldest.
func (b *Backend) FollowLogs(ctx context.Context, id procmgr.InstanceID, n int) (<-chan procmgr.LogLine, error) {
	if err := b.checkProvisioned(id); err != nil {
		return nil, err
	}
	return b.instance(id).sink.follow(ctx, clampLines(n))
}

func clampLines(n int) int {
	if n <= 0 {
		return defaultLogLines
	}
	return min(n, maxLogLines)
}

// Subscribe implements procmgr.Backend.
func (b *Backend) Subscribe(ctx context.Context) <-chan procmgr.Event {
	return b.fan.Subscribe(ctx)
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
	st.Seq = b.seq.Add(1)
	return st
}

// setStateLocked enters state s.
func (b *Backend) setStateLocked(inst *instance, s procmgr.State) {
	if inst.state != s {
		inst.state = s
		inst.since = time.Now()
	}
}

// publishLocked publishes the instance's status unless it equals the last
// one published (timestamps aside). Publishing under b.mu keeps events in
// the order of the changes; Fanout.Publish never blocks.
func (b *Backend) publishLocked(inst *instance) {
	if inst.removed {
		return
	}
	st := b.statusLocked(inst)
	if p := inst.lastPub; p != nil && p.State == st.State && p.MainPID == st.MainPID &&
		p.Restarts == st.Restarts && p.Limits == st.Limits && p.MemoryBytes == st.MemoryBytes &&
		p.CPUUsage == st.CPUUsage && p.Tasks == st.Tasks && exitEqual(p.LastExit, st.LastExit) &&
		slices.Equal(p.Notes, st.Notes) {
		return
	}
	inst.lastPub = &st
	b.fan.Publish(procmgr.Event{Status: st, At: time.Now()})
}

func exitEqual(a, b *procmgr.ExitInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
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

// savedState is the root-only state file StateDir/<id>.json, written at
// every start and change, that lets the next panel adopt the master.
type savedState struct {
	PID int `json:"pid"`
	// StartTicks is field 22 of /proc/<pid>/stat: with the PID it names
	// one process for good, since a reused PID starts later.
	StartTicks uint64 `json:"start_ticks"`
	Restarts   int    `json:"restarts"`
	// Running says a master should run (a person left it running and it
	// has not failed or stopped on its own).
	Running bool           `json:"running"`
	Failed  bool           `json:"failed,omitempty"`
	Limits  procmgr.Limits `json:"limits"`
}

func (b *Backend) statePath(id procmgr.InstanceID) string {
	return filepath.Join(b.opt.StateDir, string(id)+".json")
}

// saveState writes the instance's state file.
func (b *Backend) saveState(inst *instance) {
	inst.saveMu.Lock()
	defer inst.saveMu.Unlock()
	b.mu.Lock()
	if inst.removed {
		b.mu.Unlock()
		return
	}
	s := savedState{Restarts: inst.restarts, Limits: inst.limits, Failed: inst.state == procmgr.StateFailed}
	switch inst.state {
	case procmgr.StateStarting, procmgr.StateRunning, procmgr.StateReloading, procmgr.StateCrashLooping:
		s.Running = true
	}
	if m := inst.m; m != nil {
		s.PID, s.StartTicks = m.pid, m.ticks
	}
	b.mu.Unlock()
	data, err := json.Marshal(s)
	if err == nil {
		_, err = procmgr.WriteFileAtomic(b.statePath(inst.id), append(data, '\n'), 0, 0, 0o600)
	}
	if err != nil {
		b.logFor(inst.id, "save-state").Warn("write state file", "err", err)
	}
}

func (b *Backend) readState(id procmgr.InstanceID) (savedState, bool, error) {
	data, err := os.ReadFile(b.statePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return savedState{}, false, nil
	}
	if err != nil {
		return savedState{}, false, fmt.Errorf("supervise: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(data, &s); err != nil {
		return savedState{}, false, fmt.Errorf("supervise: state file %s: %w", b.statePath(id), err)
	}
	return s, true, nil
}

// ensureRuntimeDir makes the directory of the socket and pid file afresh
// before each start (no master runs then), owned by the instance user
// (php-fpm runs as that user and creates both) and open to its group, which
// holds the web server's user. Afresh, as systemd's RuntimeDirectory= is:
// nothing the tenant left there (a FIFO where the pid file goes would hang
// php-fpm's start) outlives a master.
func (b *Backend) ensureRuntimeDir(id procmgr.InstanceID, u procmgr.InstanceUser) error {
	dir := b.host.Layout.RuntimeDir(id)
	if err := os.MkdirAll(b.host.Layout.RuntimeRoot, 0o755); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	// Just made, in the root-owned runtime root: nothing else can be there.
	if err := os.Mkdir(dir, 0o750); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.Lchown(dir, u.UID, u.GID); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	return nil
}

// bootTime is when the machine booted, from /proc/stat; zero if unknown.
func bootTime() time.Time {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}

// userHZ is the unit of /proc/<pid>/stat times: 100 on every Linux ABI.
const userHZ = 100

// startTime is when a process with these start ticks started.
func startTime(ticks uint64) time.Time {
	bt := bootTime()
	if bt.IsZero() {
		return time.Now()
	}
	return bt.Add(time.Duration(ticks) * time.Second / userHZ)
}
