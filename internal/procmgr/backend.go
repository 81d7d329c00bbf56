package procmgr

import (
	"context"
	"fmt"
	"time"
)

// State is an instance's observed state.
type State string

// The observed states every backend reports.
const (
	StateAbsent       State = "absent" // not provisioned on this host
	StateProvisioning State = "provisioning"
	StateStarting     State = "starting"
	StateRunning      State = "running"
	StateReloading    State = "reloading"
	StateStopping     State = "stopping"
	StateStopped      State = "stopped"
	StateFailed       State = "failed"
	StateCrashLooping State = "crash-looping" // restarting after crashes
)

// Status is what really runs for one instance.
type Status struct {
	ID          InstanceID `json:"id"`
	State       State      `json:"state"`
	ActiveState string     `json:"active_state,omitempty"` // the backend's own words (systemd ActiveState)
	SubState    string     `json:"sub_state,omitempty"`
	MainPID     int        `json:"pid"`
	Restarts    int        `json:"restarts"`
	// LastExit describes how the master last ended, if it has.
	LastExit *ExitInfo `json:"last_exit,omitempty"`
	// MemoryBytes is the cgroup's current memory use; 0 when unknown.
	MemoryBytes uint64 `json:"memory_bytes"`
	// CPUUsage is the cgroup's CPU time since start.
	CPUUsage time.Duration `json:"cpu_usage_ns"`
	// Tasks is the number of tasks in the cgroup.
	Tasks   uint64    `json:"tasks"`
	Since   time.Time `json:"since,omitempty"` // when the current state was entered
	Limits  Limits    `json:"limits"`
	Backend string    `json:"backend"`
	// Notes says what the backend could not do or enforce on this host.
	Notes []string `json:"notes,omitempty"`
	// Seq orders the statuses of one backend: a status with a lower Seq
	// was observed earlier, so a consumer holding a newer one keeps it.
	// Zero means unordered.
	Seq uint64 `json:"seq,omitempty"`
}

// ExitInfo says how a master ended.
type ExitInfo struct {
	// Result is the backend's summary: success, exit-code, signal, core-dump,
	// oom-kill, timeout, start-limit-hit, ...
	Result string `json:"result"`
	Code   int    `json:"code,omitempty"`
	Signal string `json:"signal,omitempty"`
}

// String says how the master ended, for people: "killed by signal KILL
// (result: signal)".
func (e ExitInfo) String() string {
	switch {
	case e.Signal != "":
		return fmt.Sprintf("killed by signal %s (result: %s)", e.Signal, e.Result)
	case e.Code != 0:
		return fmt.Sprintf("exited with code %d (result: %s)", e.Code, e.Result)
	}
	return "result: " + e.Result
}

// Running reports whether a master runs now (so that its PID and usage
// figures are the present's, not the last run's).
func (s Status) Running() bool {
	switch s.State {
	case StateRunning, StateReloading, StateStarting:
		return s.MainPID > 1
	}
	return false
}

// Event is a change of an instance's observed state. Status is the whole new
// status, so a subscriber needs no second call.
type Event struct {
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	// Lost says this subscriber fell behind and lost events before this
	// one: what it holds of any instance may be stale, so it reads them
	// all again (List).
	Lost bool `json:"lost,omitempty"`
}

// LogLine is one line of an instance's FPM and PHP error output.
type LogLine struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// MaxLogLineLen bounds a log line; longer lines are cut and marked.
const MaxLogLineLen = 4096

// Backend runs instances on one host: the core every backend implements.
// Extra powers are optional interfaces (BatchStarter, LogReader,
// HealthProber) that callers reach through StartAll, ReadLogs, FollowLogs
// and ProbeHealth, which fall back when a backend lacks them. Every method
// takes the context first and honours its cancellation. Actions on one
// instance are serialised by the backend; Kill is never queued behind them.
type Backend interface {
	// Name is "systemd" or "supervise".
	Name() string

	// Provision makes the instance exist as spec says and leaves it running:
	// user and group, directory tree, config, service; it returns once the
	// pool answers a FastCGI ping. Provisioning an instance that already
	// matches spec is a no-op; a changed spec rewrites the config and reloads
	// the pool gracefully. A failure part-way removes what this call made.
	Provision(ctx context.Context, spec Spec) (Status, error)

	// Deprovision stops the service and removes it, its config, runtime
	// directory, user and group. The instance's files are kept unless purge.
	// Deprovisioning an absent instance is not an error.
	Deprovision(ctx context.Context, id InstanceID, purge bool) error

	// Start starts the service and waits until the pool answers a ping.
	// Starting a running instance is not an error.
	Start(ctx context.Context, id InstanceID) (Status, error)

	// Stop stops the service and waits until it is stopped. Stopping a
	// stopped instance is not an error.
	Stop(ctx context.Context, id InstanceID) (Status, error)

	// Restart is stop then start; a stopped instance is started.
	Restart(ctx context.Context, id InstanceID) (Status, error)

	// Reload asks the master to reload its config gracefully (USR2). An
	// instance that is not running returns an error wrapping ErrConflict.
	Reload(ctx context.Context, id InstanceID) (Status, error)

	// Kill sends sig to the master process only. It does not wait for the
	// instance's lock. Killing an instance with no running master returns an
	// error wrapping ErrConflict.
	Kill(ctx context.Context, id InstanceID, sig Signal) error

	// SetLimits applies limits to the running (or stopped) service without a
	// restart, reads them back, and fails if they differ from what was asked.
	SetLimits(ctx context.Context, id InstanceID, lim Limits) (Status, error)

	// Status reports the instance. An absent instance returns ErrNotFound.
	Status(ctx context.Context, id InstanceID) (Status, error)

	// List reports every instance this backend knows on the host.
	List(ctx context.Context) ([]Status, error)

	// Subscribe returns a channel of events for every instance, buffered; a
	// subscriber that falls behind loses the oldest events, and the first
	// event after the gap is marked Lost. The channel is closed when ctx
	// ends or the backend is closed. Past MaxSubscribers it fails with
	// ErrTooManySubscribers, after Close with ErrClosed.
	Subscribe(ctx context.Context) (<-chan Event, error)

	// InstalledPHP lists the PHP versions whose php-fpm is installed.
	InstalledPHP() []PHPVersion

	// Close releases the backend's connections. Instances keep running.
	Close() error
}

// BatchStarter is a backend that starts many instances faster together
// than one by one (systemd: one batch of jobs; ~2.5 s for 200 instead of
// ~9.4 s). Use StartAll.
type BatchStarter interface {
	// StartMany starts every instance in ids and returns when each has
	// started or failed; instances already running are not an error. The
	// result holds one error per id, in order, nil for those started.
	StartMany(ctx context.Context, ids []InstanceID) []error
}

// ConfigChecker is a backend that can tell whether an instance's config on
// the host is the one its spec renders to (both of ours can, from the
// files). Without it, a caller must assume it is not.
type ConfigChecker interface {
	ConfigCurrent(spec Spec) bool
}

// GroupKiller is a backend that can signal every process of an instance at
// once (systemd: the unit's cgroup). The health watch ends a hung instance
// with it, so that the restart policy starts it again at once; a backend
// without it is asked to Kill the master, and its own handling of a
// master's end takes the workers (the supervisor does).
type GroupKiller interface {
	KillAll(ctx context.Context, id InstanceID, sig Signal) error
}

// Starter is the part of a backend StartAll needs.
type Starter interface {
	Start(ctx context.Context, id InstanceID) (Status, error)
}

// StartAll starts every instance in ids: in one batch when b is a
// BatchStarter, else one at a time through Start, each until its pool
// answers. Instances already running are not an error. The result holds
// one error per id, in order, nil for those started; once ctx ends the rest
// are not tried.
func StartAll(ctx context.Context, b Starter, ids []InstanceID) []error {
	if bs, ok := b.(BatchStarter); ok {
		return bs.StartMany(ctx, ids)
	}
	errs := make([]error, len(ids))
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("procmgr: start %s: %w", id, err)
			continue
		}
		_, errs[i] = b.Start(ctx, id)
	}
	return errs
}

// StatusReader is the part of a backend that ReadLogs, FollowLogs and
// ProbeHealth need.
type StatusReader interface {
	Status(ctx context.Context, id InstanceID) (Status, error)
}
