package supervise

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/procmgr"
)

// Limits and process tracking through cgroups, where the host lets the panel
// make them. Two layouts are supported:
//
//   - pure cgroup v2 (/sys/fs/cgroup/cgroup.controllers exists): one cgroup
//     <root>/<parent>/<id> holds the limits (memory.max, cpu.max, pids.max)
//     and the processes; the master is started in it (CLONE_INTO_CGROUP).
//   - v1 controllers (memory, cpu, pids mounted apart, as on these machines),
//     usually with a v2 hierarchy at <root>/unified that has no controllers:
//     limits live in <root>/<controller>/<parent>/<id>; the unified cgroup of
//     the same name is used only to track every process of the instance
//     (the master starts in it, so no fork escapes), to list and kill them
//     all, and to read CPU time (cpu.stat).
//
// A limit the host cannot enforce is not an error: Status.Notes says which
// and why, and the limit is still reported as asked.

// Names of the limits as people see them in notes (the JSON field names).
const (
	limMemory = "memory_max"
	limCPU    = "cpu_quota"
	limTasks  = "tasks_max"
)

var limitKinds = []string{limMemory, limCPU, limTasks}

// v1 controller behind each limit, and a file that proves the mount has it.
var v1Controllers = map[string]string{limMemory: "memory", limCPU: "cpu", limTasks: "pids"}

// v1Wanted are the v1 controllers the backend uses: three for limits,
// cpuacct for CPU time where there is no v2 hierarchy.
var v1Wanted = map[string]bool{"memory": true, "cpu": true, "cpuacct": true, "pids": true}

// v2 controller behind each limit.
var v2Controllers = map[string]string{limMemory: "memory", limCPU: "cpu", limTasks: "pids"}

// cpuPeriodUS is the CFS period; a quota of 40% is 800us per period. The
// kernel's default, 100 ms, lets an instance with several busy processes
// take every core for the first part of each period (its quota at full
// width), and another instance's requests wait that long: 2 ms bounds the
// burst (the systemd unit sets CPUQuotaPeriodSec to the same). The kernel
// refuses a quota below 1 ms, so a small percentage gets a longer period
// (cpuPeriod), as systemd does.
const cpuPeriodUS = 2_000

// cpuPeriod is the period for a quota of pct percent: cpuPeriodUS, or
// longer where the quota would be under the kernel's 1 ms.
func cpuPeriod(pct uint64) uint64 {
	p := uint64(cpuPeriodUS)
	if pct*p/100 < 1000 {
		p = (100_000 + pct - 1) / pct
	}
	return p
}

// cgroups is what the host offers, found once at start.
type cgroups struct {
	root   string
	parent string
	// v2 is the v2 hierarchy: the whole tree on a pure v2 host, the
	// "unified" mount beside v1 controllers; "" when there is none usable.
	v2   string
	pure bool
	// v1 maps a v1 controller (memory, cpu, cpuacct, pids) to its mount.
	v1 map[string]string
	// hostNotes says, per limit, why the host cannot enforce it at all.
	hostNotes map[string]string
	log       *slog.Logger
}

func isFS(path string, magic int64) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && int64(st.Type) == magic
}

// detectCgroups looks at root (normally /sys/fs/cgroup) and makes the
// parent cgroup in every hierarchy it can use.
func detectCgroups(root, parent string, log *slog.Logger) *cgroups {
	c := &cgroups{root: root, parent: parent, v1: map[string]string{}, hostNotes: map[string]string{}, log: log}
	if isFS(root, unix.CGROUP2_SUPER_MAGIC) {
		c.detectPure()
		return c
	}
	for ctrl, dir := range v1Mounts(root) {
		if err := os.MkdirAll(filepath.Join(dir, parent), 0o755); err != nil {
			if lim := limitOf(ctrl); lim != "" {
				c.hostNotes[lim] = fmt.Sprintf("%s not enforced: no writable %s cgroup (%v)", lim, ctrl, err)
			}
			continue
		}
		c.v1[ctrl] = dir
	}
	for _, lim := range limitKinds {
		ctrl := v1Controllers[lim]
		if _, ok := c.v1[ctrl]; !ok && c.hostNotes[lim] == "" {
			c.hostNotes[lim] = fmt.Sprintf("%s not enforced: no writable %s cgroup (no cgroup v1 %s controller or cgroup v2 hierarchy at %s)", lim, ctrl, ctrl, root)
		}
	}
	// The v2 hierarchy beside v1 controllers tracks processes only.
	if u := filepath.Join(root, "unified"); isFS(u, unix.CGROUP2_SUPER_MAGIC) {
		if err := os.MkdirAll(filepath.Join(u, parent), 0o755); err == nil {
			c.v2 = u
		} else {
			log.Warn("no process tracking cgroup; falling back to process groups", "dir", u, "err", err)
		}
	}
	return c
}

// v1Mounts maps each wanted v1 controller to the mount of its hierarchy
// directly under root, from /proc/self/mountinfo. One hierarchy may carry
// several controllers ("cpu,cpuacct"); a root cgroup has no limit files to
// probe for (pids.max exists only below it), so the mount options say.
func v1Mounts(root string) map[string]string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" || filepath.Dir(pf[4]) != root {
			continue
		}
		for _, opt := range strings.Split(qf[2], ",") {
			if v1Wanted[opt] {
				out[opt] = pf[4]
			}
		}
	}
	return out
}

func limitOf(ctrl string) string {
	for lim, c := range v1Controllers {
		if c == ctrl {
			return lim
		}
	}
	return ""
}

// detectPure enables the memory, cpu and pids controllers for the parent's
// children. Each is tried on its own so one refusal (say, a container that
// was not delegated pids) does not hide the others.
func (c *cgroups) detectPure() {
	c.pure = true
	parentDir := filepath.Join(c.root, c.parent)
	if err := os.MkdirAll(parentDir, 0o755); err != nil {
		for _, lim := range limitKinds {
			c.hostNotes[lim] = fmt.Sprintf("%s not enforced: no writable %s cgroup (%v)", lim, v2Controllers[lim], err)
		}
		return
	}
	c.v2 = c.root
	avail := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(c.root, "cgroup.controllers")); err == nil {
		for _, f := range strings.Fields(string(data)) {
			avail[f] = true
		}
	}
	// Every level from the root down to the parent must pass the
	// controller on.
	levels := []string{c.root}
	acc := c.root
	for _, part := range strings.Split(c.parent, "/") {
		acc = filepath.Join(acc, part)
		levels = append(levels, acc)
	}
	for _, lim := range limitKinds {
		ctrl := v2Controllers[lim]
		if !avail[ctrl] {
			c.hostNotes[lim] = fmt.Sprintf("%s not enforced: no writable %s cgroup (the cgroup v2 hierarchy at %s has no %s controller)", lim, ctrl, c.root, ctrl)
			continue
		}
		for _, dir := range levels {
			if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+ctrl); err != nil {
				c.hostNotes[lim] = fmt.Sprintf("%s not enforced: no writable %s cgroup (enable %s in %s: %v)", lim, ctrl, ctrl, dir, err)
				break
			}
		}
	}
}

// trackDir is the v2 cgroup that holds every process of the instance, or ""
// when the host has no usable v2 hierarchy.
func (c *cgroups) trackDir(id procmgr.InstanceID) string {
	if c.v2 == "" {
		return ""
	}
	return filepath.Join(c.v2, c.parent, string(id))
}

// limitDir is where the files of one limit live, or "" when the host
// cannot enforce it.
func (c *cgroups) limitDir(lim string, id procmgr.InstanceID) string {
	if c.hostNotes[lim] != "" {
		return ""
	}
	if c.pure {
		return c.trackDir(id)
	}
	mount, ok := c.v1[v1Controllers[lim]]
	if !ok {
		return ""
	}
	return filepath.Join(mount, c.parent, string(id))
}

// v1Dirs are the instance's cgroups in v1 hierarchies (limits and CPU
// accounting), which a process must be moved into one by one.
func (c *cgroups) v1Dirs(id procmgr.InstanceID) []string {
	var out []string
	seen := map[string]bool{}
	for _, ctrl := range []string{"memory", "cpu", "cpuacct", "pids"} {
		if mount, ok := c.v1[ctrl]; ok && !seen[mount] {
			seen[mount] = true
			out = append(out, filepath.Join(mount, c.parent, string(id)))
		}
	}
	return out
}

// ensure makes the instance's cgroups and returns a note for every limit
// that will not be enforced, and whether it made any directory.
func (c *cgroups) ensure(id procmgr.InstanceID) ([]string, bool) {
	var notes []string
	created := false
	mk := func(dir string) error {
		if _, err := os.Stat(dir); err == nil {
			return nil
		}
		// MkdirAll: the parent is made at New, but a cgroup that another
		// manager pruned since must not cost the instance its limits.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		created = true
		return nil
	}
	if t := c.trackDir(id); t != "" {
		if err := mk(t); err != nil && !c.pure {
			c.log.Warn("no process tracking cgroup", "instance", string(id), "dir", t, "err", err)
		}
	}
	for _, d := range c.v1Dirs(id) {
		if err := mk(d); err != nil {
			c.log.Warn("make cgroup", "instance", string(id), "dir", d, "err", err)
		}
	}
	for _, lim := range limitKinds {
		if n := c.hostNotes[lim]; n != "" {
			notes = append(notes, n)
			continue
		}
		dir := c.limitDir(lim, id)
		if _, err := os.Stat(dir); err != nil {
			notes = append(notes, fmt.Sprintf("%s not enforced: no writable %s cgroup (%v)", lim, v1Controllers[lim], err))
		}
	}
	return notes, created
}

// apply writes the limits into the instance's cgroups and reads every value
// back. A limit the host cannot enforce is skipped (ensure noted it); a
// value the kernel refuses or changes is an error.
func (c *cgroups) apply(id procmgr.InstanceID, lim procmgr.Limits) error {
	type file struct{ name, value, want string }
	page := uint64(os.Getpagesize())
	// The kernel keeps memory limits in whole pages and rounds down.
	mem := strconv.FormatUint(uint64(lim.MemoryMax)/page*page, 10)
	period := cpuPeriod(uint64(lim.CPUQuota))
	quota := strconv.FormatUint(uint64(lim.CPUQuota)*period/100, 10)
	tasks := strconv.Itoa(lim.TasksMax)
	for _, kind := range limitKinds {
		dir := c.limitDir(kind, id)
		if dir == "" {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		var files []file
		switch {
		case kind == limMemory && c.pure:
			files = []file{{"memory.max", strconv.FormatUint(uint64(lim.MemoryMax), 10), mem}}
		case kind == limMemory:
			files = []file{{"memory.limit_in_bytes", strconv.FormatUint(uint64(lim.MemoryMax), 10), mem}}
		case kind == limCPU && c.pure:
			v := quota + " " + strconv.FormatUint(period, 10)
			files = []file{{"cpu.max", v, v}}
		case kind == limCPU:
			p := strconv.FormatUint(period, 10)
			files = []file{{"cpu.cfs_period_us", p, p}, {"cpu.cfs_quota_us", quota, quota}}
		case kind == limTasks:
			files = []file{{"pids.max", tasks, tasks}}
		}
		for _, f := range files {
			p := filepath.Join(dir, f.name)
			if err := writeFile(p, f.value); err != nil {
				return fmt.Errorf("supervise: set %s of %s: write %q to %s: %w", kind, id, f.value, p, err)
			}
			got, err := readTrim(p)
			if err != nil {
				return fmt.Errorf("supervise: set %s of %s: read back %s: %w", kind, id, p, err)
			}
			if got != f.want {
				return fmt.Errorf("supervise: set %s of %s: the kernel did not take it: wrote %q to %s, reads back %q", kind, id, f.value, p, got)
			}
		}
	}
	return nil
}

// join moves pid into the instance's v1 cgroups and/or its tracking cgroup.
func (c *cgroups) join(id procmgr.InstanceID, pid int, v1, track bool) {
	var dirs []string
	if v1 {
		dirs = c.v1Dirs(id)
	}
	if t := c.trackDir(id); t != "" && track {
		dirs = append(dirs, t)
	}
	for _, d := range dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
			c.log.Warn("move process into cgroup", "instance", string(id), "pid", pid, "dir", d, "err", err)
		}
	}
}

// startIn starts cmd so that the child is born in the instance's v1
// cgroups, and reports whether it was. cgroup v1 has no CLONE_INTO_CGROUP,
// but a child inherits the cgroups of the thread that forks it, and v1 can
// move a single thread (the "tasks" file): so the fork runs on an OS thread
// placed in the instance's cgroups first. That thread never runs anything
// else: its goroutine never unlocks it, and Go ends a locked thread when its
// goroutine returns. Had the master been moved after the exec instead, the
// memory it touched first would stay charged to the panel's cgroup.
func (c *cgroups) startIn(id procmgr.InstanceID, cmd *exec.Cmd) (bool, error) {
	dirs := c.v1Dirs(id)
	ch := make(chan forkResult, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			c.forkPlaced(id, dirs, cmd, ch)
			return
		}
		// Go parks the main thread rather than end it, so it must not
		// be the one placed. A goroutine started now cannot run on it
		// while this one holds it locked.
		inner := make(chan forkResult, 1)
		go c.forkPlaced(id, dirs, cmd, inner)
		ch <- <-inner
		runtime.UnlockOSThread()
	}()
	r := <-ch
	return r.placed, r.err
}

type forkResult struct {
	placed bool
	err    error
}

// forkPlaced locks its goroutine to its thread for good, moves the thread
// into dirs and starts cmd from it.
func (c *cgroups) forkPlaced(id procmgr.InstanceID, dirs []string, cmd *exec.Cmd, out chan<- forkResult) {
	runtime.LockOSThread()
	// No UnlockOSThread: the thread ends with this goroutine.
	// no_new_privs on this thread only, inherited by the master it forks
	// and never lost: setuid programs (crontab, at, fusermount) cannot take
	// tenant code out of its user or its cgroups. systemd units get the
	// same from NoNewPrivileges=.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		out <- forkResult{false, fmt.Errorf("supervise: no_new_privs: %w", err)}
		return
	}
	tid := strconv.Itoa(unix.Gettid())
	placed := len(dirs) > 0
	for _, d := range dirs {
		if err := writeFile(filepath.Join(d, "tasks"), tid); err != nil {
			c.log.Warn("place the forking thread in a cgroup", "instance", string(id), "dir", d, "err", err)
			placed = false
		}
	}
	out <- forkResult{placed, cmd.Start()}
}

// procs lists the processes of the instance's cgroup: the tracking cgroup
// when there is one, else the first v1 cgroup.
func (c *cgroups) procs(id procmgr.InstanceID) ([]int, bool) {
	dirs := c.v1Dirs(id)
	if t := c.trackDir(id); t != "" {
		dirs = append([]string{t}, dirs...)
	}
	for _, d := range dirs {
		if data, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			return parsePIDs(data), true
		}
	}
	return nil, false
}

// killAll sends SIGKILL to every process of the instance's cgroups. It
// kills them one by one rather than through cgroup.kill: on the kernel of
// these machines (6.18), once cgroup.kill has been used on a cgroup, every
// later child cloned into it (CLONE_INTO_CGROUP) is killed at birth.
// waitGone repeats this until the cgroup is empty, which also catches a
// process forked meanwhile.
func (c *cgroups) killAll(id procmgr.InstanceID) {
	// Frozen first (cgroup v2's cgroup.freeze, also on the hybrid layout's
	// tracking hierarchy): a frozen process cannot exit, so no listed PID
	// can be freed and reused by someone else's process before its
	// SIGKILL lands, and none can fork a new one meanwhile. SIGKILL still
	// ends frozen processes.
	freeze := ""
	if t := c.trackDir(id); t != "" {
		freeze = filepath.Join(t, "cgroup.freeze")
		if writeFile(freeze, "1") != nil {
			freeze = ""
		}
	}
	pids, _ := c.procs(id)
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
	if freeze != "" {
		_ = writeFile(freeze, "0")
	}
}

// remove deletes the instance's cgroups. The processes are gone by now, but
// the kernel may still be tearing the last ones down: retry for a moment.
func (c *cgroups) remove(id procmgr.InstanceID) error {
	dirs := c.v1Dirs(id)
	if t := c.trackDir(id); t != "" {
		dirs = append(dirs, t)
	}
	var errs []error
	for _, d := range dirs {
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("supervise: remove cgroup %s: %w", d, err))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// usage is what the instance's cgroups account.
type usage struct {
	memory uint64
	cpu    time.Duration
	tasks  uint64
}

func (c *cgroups) usage(id procmgr.InstanceID) usage {
	var u usage
	if d := c.limitDir(limMemory, id); d != "" {
		f := "memory.usage_in_bytes"
		if c.pure {
			f = "memory.current"
		}
		u.memory, _ = procmgr.ReadUintFile(filepath.Join(d, f))
	}
	if d := c.limitDir(limTasks, id); d != "" {
		u.tasks, _ = procmgr.ReadUintFile(filepath.Join(d, "pids.current"))
	}
	if t := c.trackDir(id); t != "" {
		if d, ok := procmgr.ReadCPUStat(filepath.Join(t, "cpu.stat")); ok {
			u.cpu = d
			return u
		}
	}
	for _, ctrl := range []string{"cpuacct", "cpu"} {
		if mount, ok := c.v1[ctrl]; ok {
			if n, err := procmgr.ReadUintFile(filepath.Join(mount, c.parent, string(id), "cpuacct.usage")); err == nil {
				u.cpu = time.Duration(n)
				break
			}
		}
	}
	return u
}

// oomKills is the cgroup's count of OOM kills, to tell an OOM kill of the
// master from a kill -9.
func (c *cgroups) oomKills(id procmgr.InstanceID) uint64 {
	d := c.limitDir(limMemory, id)
	if d == "" {
		return 0
	}
	f := "memory.oom_control"
	if c.pure {
		f = "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(d, f))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// writeFile writes one value to an existing kernel file; the kernel's
// refusal comes back from the write.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readTrim(path string) (string, error) {
	data, err := os.ReadFile(path)
	return strings.TrimSpace(string(data)), err
}
