package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

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
	host  *procmgr.Host
	log   *slog.Logger
	opt   Options
	cg    *cgroups
	locks procmgr.Locks
	// feed numbers, dedupes and publishes the statuses.
	feed procmgr.Feed

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

// ConfigCurrent implements procmgr.ConfigChecker.
func (b *Backend) ConfigCurrent(spec procmgr.Spec) bool { return b.host.ConfigCurrent(spec) }

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
	b.feed.Close()
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

// open fails once the backend is closed: its watchers are gone, so an
// action now could not see its master end.
func (b *Backend) open(id procmgr.InstanceID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("supervise: %s: backend closed", id)
	}
	return nil
}

func (b *Backend) lock(ctx context.Context, id procmgr.InstanceID) (func(), error) {
	if err := b.open(id); err != nil {
		return nil, err
	}
	unlock, err := b.locks.Lock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("supervise: %s: waiting for another action: %w", id, err)
	}
	return unlock, nil
}
