package supervise_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/procmgr/supervise"
)

// cgroupRoot is where this host mounts its cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// helperEnv makes the test binary act as a panel for
// TestAdoptFromKilledPanelProcess instead of running tests.
const helperEnv = "SUPERVISE_TEST_HELPER_PANEL"

func TestMain(m *testing.M) {
	if raw := os.Getenv(helperEnv); raw != "" {
		runHelperPanel(raw)
		return
	}
	os.Exit(m.Run())
}

// options makes the backend options of one test on layout l: state, logs
// and cgroups of its own, all removed afterwards, and a check that no
// process of the test's instances survives it.
func options(tb testing.TB, l procmgr.Layout) supervise.Options {
	tb.Helper()
	base := filepath.Dir(l.InstancesRoot)
	opt := supervise.Options{
		Layout:       l,
		Log:          procmgrtest.Logger(tb, slog.LevelInfo),
		StateDir:     filepath.Join(base, "state"),
		LogDir:       filepath.Join(base, "log"),
		CgroupParent: "ikabud-test-" + l.UnitPrefix,
	}
	// Registered after NewLayout's cleanup, so it runs before the test's
	// base directory is removed, and after every backend is closed.
	tb.Cleanup(func() { checkNoLeftovers(tb, l, opt) })
	return opt
}

// setup is a fresh layout and its options.
func setup(tb testing.TB) (procmgr.Layout, supervise.Options) {
	tb.Helper()
	procmgrtest.RequirePHPFPM(tb)
	l := procmgrtest.NewLayout(tb)
	return l, options(tb, l)
}

// open makes a backend that the test's cleanup closes (closing twice is
// harmless).
func open(tb testing.TB, opt supervise.Options) *supervise.Backend {
	tb.Helper()
	b := mustNew(tb, opt)
	tb.Cleanup(func() { b.Close() })
	return b
}

func mustNew(tb testing.TB, opt supervise.Options) *supervise.Backend {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := supervise.New(ctx, opt)
	if err != nil {
		tb.Fatalf("supervise backend: %v", err)
	}
	return b
}

// session is the backend a test uses now, as the panel would: instances
// are removed through whichever backend is current at the end, and it is
// closed after them.
type session struct {
	opt supervise.Options
	b   *supervise.Backend
}

func newSession(tb testing.TB, opt supervise.Options) *session {
	tb.Helper()
	s := &session{opt: opt, b: mustNew(tb, opt)}
	tb.Cleanup(func() { s.b.Close() })
	return s
}

// restart is a panel restart: the backend closes, a new one starts on the
// same host.
func (s *session) restart(tb testing.TB) {
	tb.Helper()
	if err := s.b.Close(); err != nil {
		tb.Fatal(err)
	}
	s.b = mustNew(tb, s.opt)
}

func ctxFor(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// provision provisions a fresh instance; cleanup deprovisions it with purge
// through the session's backend of that time.
func provision(tb testing.TB, s *session, suffix string, in procmgr.SpecInput) (procmgr.Spec, procmgr.Status) {
	tb.Helper()
	spec := procmgrtest.MustSpec(tb, procmgrtest.NewID(suffix), in)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.b.Deprovision(ctx, spec.ID, true); err != nil {
			tb.Errorf("cleanup: deprovision %s: %v", spec.ID, err)
		}
	})
	st, err := s.b.Provision(ctxFor(tb), spec)
	if err != nil {
		tb.Fatalf("provision %s: %v", spec.ID, err)
	}
	return spec, st
}

// waitStatus polls the status until ok or d has passed.
func waitStatus(tb testing.TB, b procmgr.Backend, id procmgr.InstanceID, d time.Duration, ok func(procmgr.Status) bool) procmgr.Status {
	tb.Helper()
	deadline := time.Now().Add(d)
	var st procmgr.Status
	for {
		var err error
		st, err = b.Status(context.Background(), id)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			return st
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces and parentheses): f[0] is the state, f[2] the
// process group, f[3] the session, f[19] the start time in ticks.
func statFields(pid int) ([]string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(data, ')')
	return strings.Fields(string(data[i+1:])), true
}

// procStat returns the state letter, process group and start ticks of pid.
func procStat(pid int) (byte, int, uint64, bool) {
	f, ok := statFields(pid)
	if !ok {
		return 0, 0, 0, false
	}
	pgrp, _ := strconv.Atoi(f[2])
	ticks, _ := strconv.ParseUint(f[19], 10, 64)
	return f[0][0], pgrp, ticks, true
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	s, _, _, ok := procStat(pid)
	return ok && s != 'Z' && s != 'X'
}

func cmdline(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// livePIDs lists every live process on the host.
func livePIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// masters lists the live php-fpm masters running the given config. A worker
// the master has just forked carries the master's title until it sets its
// own (an ondemand pool forks one for a ping), so a process with the title
// whose parent has it too is a worker, not a second master.
func masters(config string) []int {
	titled := map[int]bool{}
	for _, pid := range livePIDs() {
		if cl := cmdline(pid); strings.HasPrefix(cl, "php-fpm: master process") && strings.Contains(cl, "("+config+")") {
			titled[pid] = true
		}
	}
	var out []int
	for pid := range titled {
		if !titled[parentPID(pid)] {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// parentPID is field 4 of /proc/<pid>/stat; 0 when pid is gone.
func parentPID(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// waitDead waits until pid no longer runs.
func waitDead(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			tb.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkNoLeftovers fails the test if any process of its instances survived
// (a master names the test's config root; masters and workers run in its
// instance directories) or a cgroup of it is left, and cleans up either.
func checkNoLeftovers(tb testing.TB, l procmgr.Layout, opt supervise.Options) {
	for _, pid := range livePIDs() {
		cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		if strings.Contains(cmdline(pid), l.ConfigRoot+"/") || strings.HasPrefix(cwd, l.InstancesRoot+"/") {
			tb.Errorf("process %d (%q, cwd %s) of the test survived it", pid, cmdline(pid), cwd)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	parent := opt.CgroupParent
	for _, h := range []string{"", "unified", "memory", "cpu", "cpuacct", "pids"} {
		dir := filepath.Join(cgroupRoot, h, parent)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				tb.Errorf("cgroup %s/%s left behind", dir, e.Name())
				if data, err := os.ReadFile(filepath.Join(dir, e.Name(), "cgroup.procs")); err == nil {
					for _, f := range strings.Fields(string(data)) {
						if p, err := strconv.Atoi(f); err == nil {
							syscall.Kill(p, syscall.SIGKILL)
						}
					}
				}
				time.Sleep(50 * time.Millisecond)
				syscall.Rmdir(filepath.Join(dir, e.Name()))
			}
		}
		if err := syscall.Rmdir(dir); err != nil {
			tb.Errorf("remove cgroup %s: %v", dir, err)
		}
	}
	os.RemoveAll(l.RuntimeRoot)
}

// percentile returns the p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func describe(st procmgr.Status) string {
	ex := "none"
	if st.LastExit != nil {
		ex = fmt.Sprintf("%+v", *st.LastExit)
	}
	return fmt.Sprintf("state %s pid %d restarts %d last exit %s notes %q", st.State, st.MainPID, st.Restarts, ex, st.Notes)
}

// instanceUID is the uid of id's user.
func instanceUID(tb testing.TB, id procmgr.InstanceID) int {
	tb.Helper()
	u, err := user.Lookup(id.UserName())
	if err != nil {
		tb.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}
