package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/ikabud/panel/internal/procmgr"
)

// Backend runs instances as ikabud@<id>.service units.
type Backend struct {
	host  *procmgr.Host
	log   *slog.Logger
	conn  conn
	locks procmgr.Locks
	// feed numbers, dedupes and publishes the statuses.
	feed procmgr.Feed
	// bindDenied: the manager enforces SocketBindDeny= (SocketBindDenied).
	bindDenied bool

	mu    sync.Mutex
	exits map[procmgr.InstanceID]procmgr.ExitInfo // last exit seen per instance
	props map[procmgr.InstanceID]map[string]any   // cached unit properties, kept current by signals

	refreshMu sync.Mutex
	dirty     map[procmgr.InstanceID]bool
	kick      chan struct{}
	// batches counts StartMany calls in flight. While one runs, full
	// re-reads wait: each is a GetAll that costs systemd CPU it needs for
	// the starts. Events from the signals themselves still go out at once.
	batches atomic.Int32
	// readers holds a slot per running journalctl (maxJournalReaders).
	readers chan struct{}

	stop chan struct{}
	done sync.WaitGroup
}

// Options configure a Backend.
type Options struct {
	Layout procmgr.Layout
	Log    *slog.Logger
}

// New connects to systemd, installs the template unit (reloading systemd
// only if the template changed) and starts listening for unit signals.
func New(ctx context.Context, opt Options) (*Backend, error) {
	host, err := procmgr.NewHost(opt.Layout)
	if err != nil {
		return nil, err
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{
		host:    host,
		log:     log.With("backend", "systemd"),
		exits:   map[procmgr.InstanceID]procmgr.ExitInfo{},
		props:   map[procmgr.InstanceID]map[string]any{},
		readers: make(chan struct{}, maxJournalReaders),
		dirty:   map[procmgr.InstanceID]bool{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	c, err := b.conn.get(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.installTemplate(ctx, c); err != nil {
		b.conn.close()
		return nil, err
	}
	// "+BPF_FRAMEWORK" among the manager's compile-time features: the
	// units' SocketBindDeny= is enforced (Debian 12's systemd has it off).
	if f, err := c.GetManagerProperty("Features"); err == nil {
		b.bindDenied = strings.Contains(f, "+BPF_FRAMEWORK")
	}
	b.done.Add(2)
	go b.watch()
	go b.refresher()
	return b, nil
}

// Name implements procmgr.Backend.
func (b *Backend) Name() string { return "systemd" }

// SocketBindDenied reports whether this host's systemd enforces the units'
// SocketBindDeny=any, so that no instance can bind an IP port (the panel's
// included). It needs systemd built with its BPF framework; without it the
// option is ignored and only ports below 1024 are out of tenants' reach.
func (b *Backend) SocketBindDenied() bool { return b.bindDenied }

// ConfigCurrent implements procmgr.ConfigChecker.
func (b *Backend) ConfigCurrent(spec procmgr.Spec) bool { return b.host.ConfigCurrent(spec) }

// InstalledPHP implements procmgr.Backend.
func (b *Backend) InstalledPHP() []procmgr.PHPVersion { return procmgr.InstalledPHP() }

// Close implements procmgr.Backend. Instances keep running.
func (b *Backend) Close() error {
	select {
	case <-b.stop:
		return nil
	default:
	}
	close(b.stop)
	b.conn.close()
	b.done.Wait()
	b.feed.Close()
	return nil
}

func (b *Backend) installTemplate(ctx context.Context, c *sd.Conn) error {
	path := b.host.Layout.UnitDir + "/" + b.host.Layout.UnitTemplateName()
	changed, err := procmgr.WriteFileAtomic(path, procmgr.RenderUnitTemplate(b.host.Layout), 0, 0, 0o644)
	if err != nil {
		return err
	}
	if !changed {
		return nil
	}
	b.log.Info("template unit changed; reloading systemd", "path", path)
	if err := c.ReloadContext(ctx); err != nil {
		// Without the file, the next start writes it again and reloads;
		// left in place, it would look unchanged and never be loaded.
		os.Remove(path)
		return fmt.Errorf("systemd: daemon-reload: %w", err)
	}
	return nil
}

func (b *Backend) logFor(id procmgr.InstanceID, action string) *slog.Logger {
	return b.log.With("instance", string(id), "action", action)
}

// Provision implements procmgr.Backend.
func (b *Backend) Provision(ctx context.Context, spec procmgr.Spec) (st procmgr.Status, err error) {
	unlock, err := b.locks.Lock(ctx, spec.ID)
	if err != nil {
		return procmgr.Status{}, err
	}
	defer unlock()
	c, err := b.conn.get(ctx)
	if err != nil {
		return procmgr.Status{}, err
	}
	id, unit := spec.ID, b.host.Layout.UnitName(spec.ID)
	log := b.logFor(id, "provision")

	prep, err := b.host.Prepare(ctx, spec, log)
	if err != nil {
		return procmgr.Status{}, err
	}
	// If a later step fails, undo what this attempt made.
	defer func() {
		if err != nil {
			prep.Undo(ctx, func(ctx context.Context) {
				if err := b.removeUnitState(ctx, id); err != nil {
					log.Error("rollback: stop", "err", err)
				}
			})
		}
	}()
	changed := prep.Changed
	if err := b.applyLimits(ctx, c, id, spec.Limits); err != nil {
		return procmgr.Status{}, err
	}
	props, err := c.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return procmgr.Status{}, fmt.Errorf("systemd: %s: %w", unit, err)
	}
	active, _ := props["ActiveState"].(string)
	switch {
	case active == "active" && changed:
		log.Info("config changed; reloading")
		err = b.jobAndReady(ctx, c, id, "reload")
	case active == "active":
		// Already as asked.
	default:
		err = b.jobAndReady(ctx, c, id, "start")
	}
	if err != nil {
		return procmgr.Status{}, err
	}
	return b.refreshStatus(ctx, c, id)
}

// removeUnitState stops the unit and forgets its persisted limits. If the
// unit cannot be stopped it returns the error and leaves everything else,
// so that a remove never hides an instance that still runs.
func (b *Backend) removeUnitState(ctx context.Context, id procmgr.InstanceID) error {
	unit := b.host.Layout.UnitName(id)
	c, err := b.conn.get(ctx)
	if err != nil {
		return err
	}
	if err := stopUnit(ctx, c, unit); err != nil {
		return err
	}
	_ = c.ResetFailedUnitContext(ctx, unit)
	// SetUnitProperties(runtime=false) persisted the limits here.
	for _, dir := range []string{"/etc/systemd/system.control/" + unit + ".d", "/run/systemd/system.control/" + unit + ".d"} {
		if err := os.RemoveAll(dir); err != nil {
			b.logFor(id, "remove").Warn("remove drop-ins", "dir", dir, "err", err)
		}
	}
	return nil
}

// jobAndReady runs a start, restart or reload job and waits until the pool
// answers a ping.
func (b *Backend) jobAndReady(ctx context.Context, c *sd.Conn, id procmgr.InstanceID, verb string) error {
	unit := b.host.Layout.UnitName(id)
	ch := make(chan string, 1)
	var err error
	var old []int
	var pidWritten time.Time
	switch verb {
	case "start", "restart":
		// A unit that hit its start limit refuses to start until reset.
		if p, perr := c.GetUnitPropertyContext(ctx, unit, "ActiveState"); perr == nil && p.Value.Value() == "failed" {
			_ = c.ResetFailedUnitContext(ctx, unit)
		}
		if verb == "restart" {
			// Restart is stop, wait, start: systemd's own restart job
			// would stop with one signal, which php-fpm may lose.
			if err := stopUnit(ctx, c, unit); err != nil {
				return err
			}
		}
		_, err = c.StartUnitContext(ctx, unit, "replace", ch)
	case "reload":
		// php-fpm reloads (USR2) by letting its workers finish, then
		// re-executing the master. Until the old workers are gone a ping
		// may still be answered by the old config, so they are waited for.
		old = b.workerPIDs(id)
		if fi, serr := os.Stat(b.host.Layout.PIDPath(id)); serr == nil {
			pidWritten = fi.ModTime()
		}
		_, err = c.ReloadUnitContext(ctx, unit, "replace", ch)
	}
	if err != nil {
		return fmt.Errorf("systemd: %s %s: %w", verb, unit, err)
	}
	if err := waitJob(ctx, unit, verb, ch); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := procmgr.WaitProcessesGone(rctx, old); err != nil {
		return fmt.Errorf("systemd: %s %s: old workers did not exit: %w", verb, unit, err)
	}
	if !pidWritten.IsZero() {
		// A signal that reaches php-fpm while it re-executes is lost; a
		// stop right after the reload would wait out its timeout.
		if err := procmgr.WaitFileRewritten(rctx, b.host.Layout.PIDPath(id), pidWritten); err != nil {
			return fmt.Errorf("systemd: %s %s: %w", verb, unit, err)
		}
	}
	// Only the unit's own master counts as ready: the socket's directory
	// is the instance's to write.
	p, err := c.GetUnitTypePropertyContext(rctx, unit, "Service", "MainPID")
	if err != nil {
		return fmt.Errorf("systemd: %s %s: %w", verb, unit, err)
	}
	pid, _ := p.Value.Value().(uint32)
	if pid == 0 {
		return fmt.Errorf("systemd: %s %s: no main process after the job", verb, unit)
	}
	if err := procmgr.WaitInstanceReady(rctx, b.host.Layout.SocketPath(id), int(pid)); err != nil {
		return fmt.Errorf("systemd: %s %s: pool not answering: %w", verb, unit, err)
	}
	return nil
}

// applyLimits sets the instance's limits over D-Bus (persisted, no
// daemon-reload), reads them back and fails if systemd did not apply them.
func (b *Backend) applyLimits(ctx context.Context, c *sd.Conn, id procmgr.InstanceID, lim procmgr.Limits) error {
	unit := b.host.Layout.UnitName(id)
	want := limitProps(lim)
	if err := c.SetUnitPropertiesContext(ctx, unit, false,
		sd.Property{Name: "MemoryMax", Value: godbus.MakeVariant(want.memoryMax)},
		sd.Property{Name: "CPUQuotaPerSecUSec", Value: godbus.MakeVariant(want.cpuQuotaUSec)},
		sd.Property{Name: "TasksMax", Value: godbus.MakeVariant(want.tasksMax)},
	); err != nil {
		return fmt.Errorf("systemd: set limits of %s: %w", unit, err)
	}
	props, err := c.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if err != nil {
		return fmt.Errorf("systemd: read back limits of %s: %w", unit, err)
	}
	return checkLimits(unit, want, props)
}

// checkLimits compares the limits asked with the properties systemd reports
// back: a value it clamped, rounded or refused is an error naming both.
func checkLimits(unit string, want limitValues, props map[string]any) error {
	if got := limitPropsFrom(props); got != want {
		return fmt.Errorf("systemd: limits of %s not applied: asked %+v, systemd has %+v", unit, want, got)
	}
	return nil
}

// workerPIDs lists the master's children: php-fpm's workers. Other
// processes in the cgroup (a tenant's own background job) are not waited
// for on a reload.
func (b *Backend) workerPIDs(id procmgr.InstanceID) []int {
	b.mu.Lock()
	main, _ := b.props[id]["MainPID"].(uint32)
	b.mu.Unlock()
	if main == 0 {
		return nil
	}
	return procmgr.Children(int(main))
}

type limitValues struct {
	memoryMax    uint64
	cpuQuotaUSec uint64
	tasksMax     uint64
}

func limitProps(l procmgr.Limits) limitValues {
	return limitValues{
		memoryMax: uint64(l.MemoryMax),
		// CPUQuota=40% is 400ms of CPU time per second.
		cpuQuotaUSec: uint64(l.CPUQuota) * 10_000,
		tasksMax:     uint64(l.TasksMax),
	}
}

func limitPropsFrom(p map[string]any) limitValues {
	u := func(k string) uint64 { v, _ := p[k].(uint64); return v }
	return limitValues{memoryMax: u("MemoryMax"), cpuQuotaUSec: u("CPUQuotaPerSecUSec"), tasksMax: u("TasksMax")}
}

func limitsFrom(v limitValues) procmgr.Limits {
	return procmgr.Limits{
		MemoryMax: procmgr.Bytes(v.memoryMax),
		CPUQuota:  procmgr.CPUPercent(v.cpuQuotaUSec / 10_000),
		TasksMax:  int(v.tasksMax),
	}
}

// Deprovision implements procmgr.Backend.
func (b *Backend) Deprovision(ctx context.Context, id procmgr.InstanceID, purge bool) error {
	unlock, err := b.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := b.removeUnitState(ctx, id); err != nil {
		return fmt.Errorf("systemd: remove %s: %w", id, err)
	}
	if err := b.host.RemoveConfig(id); err != nil {
		return err
	}
	if err := b.host.Retire(ctx, id, purge); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.exits, id)
	delete(b.props, id)
	b.mu.Unlock()
	b.feed.Gone(id, b.Name())
	return nil
}

// power runs one locked action on a provisioned instance and publishes the
// status after it.
func (b *Backend) power(ctx context.Context, id procmgr.InstanceID, f func(*sd.Conn) error) (procmgr.Status, error) {
	return procmgr.Power(ctx, b.host, &b.locks, id, func() (procmgr.Status, error) {
		c, err := b.conn.get(ctx)
		if err != nil {
			return procmgr.Status{}, err
		}
		if err := f(c); err != nil {
			return procmgr.Status{}, err
		}
		return b.refreshStatus(ctx, c, id)
	})
}

// Start implements procmgr.Backend.
func (b *Backend) Start(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(c *sd.Conn) error {
		return b.jobAndReady(ctx, c, id, "start")
	})
}

// Restart implements procmgr.Backend.
func (b *Backend) Restart(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(c *sd.Conn) error {
		return b.jobAndReady(ctx, c, id, "restart")
	})
}

// Reload implements procmgr.Backend.
func (b *Backend) Reload(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(c *sd.Conn) error {
		p, err := c.GetUnitPropertyContext(ctx, b.host.Layout.UnitName(id), "ActiveState")
		if err != nil {
			return fmt.Errorf("systemd: %w", err)
		}
		if p.Value.Value() != "active" {
			return fmt.Errorf("systemd: reload %s: instance is not running: %w", id, procmgr.ErrConflict)
		}
		return b.jobAndReady(ctx, c, id, "reload")
	})
}

// Stop implements procmgr.Backend.
func (b *Backend) Stop(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	return b.power(ctx, id, func(c *sd.Conn) error {
		return stopUnit(ctx, c, b.host.Layout.UnitName(id))
	})
}

// stopResignal is how often a stop sends SIGTERM again to a master that is
// still there.
const stopResignal = 100 * time.Millisecond

// stopUnit stops a unit and waits for it. php-fpm loses a signal that
// arrives while it re-executes itself for a reload (measured: a SIGTERM 0-2
// ms after a SIGUSR2 is ignored), and systemd sends its stop signal once,
// then waits TimeoutStopSec. So while the stop job runs, SIGTERM is sent to
// the main process again every 100 ms; it is php-fpm's "terminate now", the
// same as systemd's own.
func stopUnit(ctx context.Context, c *sd.Conn, unit string) error {
	ch := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("systemd: stop %s: %w", unit, err)
	}
	done := make(chan error, 1)
	go func() { done <- waitJob(ctx, unit, "stop", ch) }()
	t := time.NewTicker(stopResignal)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			// No main process any more is fine: the job is about to end.
			_ = c.KillUnitWithTarget(ctx, unit, sd.Main, int32(syscall.SIGTERM))
		}
	}
}

// StartMany implements procmgr.BatchStarter: all start jobs are queued at once,
// several calls in flight on the connection, and systemd runs the jobs in
// parallel.
func (b *Backend) StartMany(ctx context.Context, ids []procmgr.InstanceID) []error {
	errs := make([]error, len(ids))
	c, err := b.conn.get(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	t0 := time.Now()
	b.batches.Add(1)
	defer func() {
		b.batches.Add(-1)
		for _, id := range ids {
			b.markDirty(id)
		}
	}()
	chans := make([]chan string, len(ids))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, id := range ids {
		if err := b.host.Provisioned(id); err != nil {
			errs[i] = err
			continue
		}
		// A unit that hit its start limit refuses to start until reset.
		b.mu.Lock()
		failed := b.props[id]["ActiveState"] == "failed"
		b.mu.Unlock()
		if failed {
			_ = c.ResetFailedUnitContext(ctx, b.host.Layout.UnitName(id))
		}
		chans[i] = make(chan string, 1)
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, unit string) {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.StartUnitContext(ctx, unit, "replace", chans[i]); err != nil {
				errs[i] = fmt.Errorf("systemd: start %s: %w", unit, err)
				chans[i] = nil
			}
		}(i, b.host.Layout.UnitName(id))
	}
	wg.Wait()
	queued := time.Since(t0)
	for i, ch := range chans {
		if ch == nil {
			continue
		}
		if err := waitJob(ctx, b.host.Layout.UnitName(ids[i]), "start", ch); err != nil {
			errs[i] = err
		}
	}
	b.log.Info("started instances in one batch", "action", "start-many", "count", len(ids), "queued", queued, "done", time.Since(t0))
	return errs
}

// Kill implements procmgr.Backend. It sends the signal to the main process
// only and deliberately takes no lock.
func (b *Backend) Kill(ctx context.Context, id procmgr.InstanceID, sig procmgr.Signal) error {
	c, unit, err := b.provisionedUnit(ctx, id)
	if err != nil {
		return err
	}
	p, err := c.GetUnitTypePropertyContext(ctx, unit, "Service", "MainPID")
	if err != nil {
		return fmt.Errorf("systemd: kill %s: %w", unit, err)
	}
	if pid, _ := p.Value.Value().(uint32); pid == 0 {
		return fmt.Errorf("systemd: kill %s: no running master: %w", unit, procmgr.ErrConflict)
	}
	if err := c.KillUnitWithTarget(ctx, unit, sd.Main, int32(sig.Number())); err != nil {
		return fmt.Errorf("systemd: kill %s with %s: %w", unit, sig, err)
	}
	return nil
}

// provisionedUnit is the connection and unit of a provisioned instance.
func (b *Backend) provisionedUnit(ctx context.Context, id procmgr.InstanceID) (*sd.Conn, string, error) {
	if err := b.host.Provisioned(id); err != nil {
		return nil, "", err
	}
	c, err := b.conn.get(ctx)
	if err != nil {
		return nil, "", err
	}
	return c, b.host.Layout.UnitName(id), nil
}

// KillAll implements procmgr.GroupKiller: sig to every process of the
// unit. With KillMode=mixed, a master killed alone leaves its workers to
// systemd's stop timeout (30 s) before the unit can start again.
func (b *Backend) KillAll(ctx context.Context, id procmgr.InstanceID, sig procmgr.Signal) error {
	c, unit, err := b.provisionedUnit(ctx, id)
	if err != nil {
		return err
	}
	if err := c.KillUnitWithTarget(ctx, unit, sd.All, int32(sig.Number())); err != nil {
		return fmt.Errorf("systemd: kill all of %s with %s: %w", unit, sig, err)
	}
	return nil
}

// SetLimits implements procmgr.Backend.
func (b *Backend) SetLimits(ctx context.Context, id procmgr.InstanceID, lim procmgr.Limits) (procmgr.Status, error) {
	return b.power(ctx, id, func(c *sd.Conn) error {
		return b.applyLimits(ctx, c, id, lim)
	})
}

// Status implements procmgr.Backend.
func (b *Backend) Status(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	if err := b.host.Provisioned(id); err != nil {
		return procmgr.Status{}, err
	}
	c, err := b.conn.get(ctx)
	if err != nil {
		return procmgr.Status{}, err
	}
	return b.readStatus(ctx, c, id)
}

// List implements procmgr.Backend.
func (b *Backend) List(ctx context.Context) ([]procmgr.Status, error) {
	ids, err := b.host.ListConfigured()
	if err != nil {
		return nil, err
	}
	c, err := b.conn.get(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]procmgr.Status, 0, len(ids))
	for _, id := range ids {
		st, err := b.readStatus(ctx, c, id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Subscribe implements procmgr.Backend.
func (b *Backend) Subscribe(ctx context.Context) (<-chan procmgr.Event, error) {
	return b.feed.Subscribe(ctx)
}

// statusProps are the unit properties a Status is made of; the cache keeps
// only these.
var statusProps = map[string]bool{
	"ActiveState": true, "SubState": true, "StateChangeTimestamp": true,
	"MainPID": true, "NRestarts": true, "Result": true,
	"ExecMainCode": true, "ExecMainStatus": true, "ExecMainExitTimestamp": true,
	"ControlGroup": true, "MemoryCurrent": true, "CPUUsageNSec": true, "TasksCurrent": true,
	"MemoryMax": true, "CPUQuotaPerSecUSec": true, "TasksMax": true,
}

// readStatus reads one unit's properties in a single D-Bus call and makes
// them the instance's cached properties.
func (b *Backend) readStatus(ctx context.Context, c *sd.Conn, id procmgr.InstanceID) (procmgr.Status, error) {
	unit := b.host.Layout.UnitName(id)
	all, err := c.GetAllPropertiesContext(ctx, unit)
	if err != nil {
		return procmgr.Status{}, fmt.Errorf("systemd: status of %s: %w", unit, err)
	}
	props := make(map[string]any, len(statusProps))
	for k := range statusProps {
		if v, ok := all[k]; ok {
			props[k] = v
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.props[id] = props
	return b.statusLocked(id, props), nil
}

// statusLocked makes a Status of cached properties. systemd forgets how the
// last master ended as soon as the next one starts, so the backend remembers
// it from the moment it was seen.
func (b *Backend) statusLocked(id procmgr.InstanceID, props map[string]any) procmgr.Status {
	st := b.feed.Stamp(statusFromProps(id, props))
	if st.LastExit != nil {
		b.exits[id] = *st.LastExit
	} else if ex, ok := b.exits[id]; ok {
		st.LastExit = &ex
	}
	return st
}

// refreshStatus reads and publishes the status if it changed.
func (b *Backend) refreshStatus(ctx context.Context, c *sd.Conn, id procmgr.InstanceID) (procmgr.Status, error) {
	st, err := b.readStatus(ctx, c, id)
	if err != nil {
		return st, err
	}
	b.feed.Publish(st)
	return st, nil
}

const nsecNotSet = ^uint64(0)

func statusFromProps(id procmgr.InstanceID, p map[string]any) procmgr.Status {
	str := func(k string) string { v, _ := p[k].(string); return v }
	u64 := func(k string) uint64 { v, _ := p[k].(uint64); return v }
	u32 := func(k string) uint32 { v, _ := p[k].(uint32); return v }
	i32 := func(k string) int32 { v, _ := p[k].(int32); return v }
	st := procmgr.Status{
		ID:          id,
		ActiveState: str("ActiveState"),
		SubState:    str("SubState"),
		MainPID:     int(u32("MainPID")),
		Restarts:    int(u32("NRestarts")),
		Backend:     "systemd",
		Limits:      limitsFrom(limitPropsFrom(p)),
	}
	st.State = mapState(st.ActiveState, st.SubState)
	if ts := u64("StateChangeTimestamp"); ts != 0 {
		st.Since = time.UnixMicro(int64(ts)).UTC()
	}
	if u64("ExecMainExitTimestamp") != 0 {
		ex := &procmgr.ExitInfo{Result: str("Result")}
		switch i32("ExecMainCode") {
		case 1: // CLD_EXITED
			ex.Code = int(i32("ExecMainStatus"))
		case 2, 3: // CLD_KILLED, CLD_DUMPED
			ex.Signal = signalName(int(i32("ExecMainStatus")))
		}
		st.LastExit = ex
	}
	cg := str("ControlGroup")
	if m := u64("MemoryCurrent"); m != nsecNotSet {
		st.MemoryBytes = m
	} else if cg != "" {
		st.MemoryBytes = cgroupMemory(cg)
	}
	if n := u64("CPUUsageNSec"); n != nsecNotSet {
		st.CPUUsage = time.Duration(n)
	} else if cg != "" {
		st.CPUUsage = cgroupCPU(cg)
	}
	if t := u64("TasksCurrent"); t != nsecNotSet {
		st.Tasks = t
	}
	return st
}

func mapState(active, sub string) procmgr.State {
	switch active {
	case "active":
		if sub == "reload" {
			return procmgr.StateReloading
		}
		return procmgr.StateRunning
	case "reloading":
		return procmgr.StateReloading
	case "activating":
		if sub == "auto-restart" {
			return procmgr.StateCrashLooping
		}
		return procmgr.StateStarting
	case "deactivating":
		return procmgr.StateStopping
	case "failed":
		return procmgr.StateFailed
	case "inactive":
		return procmgr.StateStopped
	}
	return procmgr.State(strings.ToLower(active))
}

var signalNames = map[int]string{1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 6: "ABRT", 7: "BUS", 8: "FPE", 9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM"}

func signalName(n int) string {
	if s, ok := signalNames[n]; ok {
		return s
	}
	return fmt.Sprintf("%d", n)
}
