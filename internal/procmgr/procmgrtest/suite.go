// Package procmgrtest is the conformance suite every procmgr.Backend passes.
// It drives a real backend on the real host: real users, real php-fpm
// masters, real signals. Nothing in it is faked.
package procmgrtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// Factory makes a backend for one test on layout l. The suite closes it.
type Factory func(t *testing.T, l procmgr.Layout) procmgr.Backend

// RequirePHPFPM fails the test if php-fpm 8.2 is missing.
func RequirePHPFPM(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/php-fpm8.2"); err != nil {
		t.Fatalf("php-fpm8.2 is not installed (%v): run scripts/deps.sh or apt-get install php8.2-fpm", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("these tests create Unix users and services: run them as root (make test)")
	}
}

// RandomHex returns n random hex characters.
func RandomHex(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

// NewLayout makes a private layout for one test: its own roots, runtime
// directory and unit prefix, all removed afterwards. Roots are under
// /var/lib, not /tmp, because the units get a private /tmp.
func NewLayout(t testing.TB) procmgr.Layout {
	t.Helper()
	tag := RandomHex(8)
	base := filepath.Join("/var/lib/ikabud-test", tag)
	l := procmgr.Layout{
		InstancesRoot: filepath.Join(base, "instances"),
		ConfigRoot:    filepath.Join(base, "etc"),
		RuntimeRoot:   "/run/ikt-" + tag,
		UnitDir:       "/etc/systemd/system",
		WebUser:       "www-data",
		UnitPrefix:    "ikt-" + tag,
	}
	t.Cleanup(func() {
		os.RemoveAll(base)
		os.RemoveAll(l.RuntimeRoot)
		os.Remove(filepath.Join(l.UnitDir, l.UnitTemplateName()))
		// What a supervisor started by `panel serve` for this layout
		// keeps: state, logs and its (by now empty) parent cgroups.
		os.RemoveAll("/run/" + l.UnitPrefix + "-supervise")
		os.RemoveAll("/var/log/" + l.UnitPrefix)
		os.RemoveAll("/var/log/" + l.UnitPrefix + "-sites")
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + l.UnitPrefix)
		for _, d := range append(dirs, "/sys/fs/cgroup/"+l.UnitPrefix) {
			os.Remove(d)
		}
	})
	return l
}

// NewID returns a fresh instance id with a readable suffix.
func NewID(suffix string) procmgr.InstanceID {
	id, err := procmgr.ParseInstanceID("t" + RandomHex(6) + "-" + suffix)
	if err != nil {
		panic(err)
	}
	return id
}

// MustSpec builds a spec from defaults and overrides.
func MustSpec(t testing.TB, id procmgr.InstanceID, in procmgr.SpecInput) procmgr.Spec {
	t.Helper()
	s, err := procmgr.ParseSpec(string(id), in, nil)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return s
}

type env struct {
	t  *testing.T
	b  procmgr.Backend
	l  procmgr.Layout
	ct context.Context
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(e.ct, 60*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// provision provisions a fresh instance and removes it after the test.
func (e *env) provision(suffix string, in procmgr.SpecInput) (procmgr.Spec, procmgr.Status) {
	e.t.Helper()
	id := NewID(suffix)
	spec := MustSpec(e.t, id, in)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.b.Deprovision(ctx, id, true); err != nil {
			e.t.Errorf("cleanup: deprovision %s: %v", id, err)
		}
		// Whatever the code under test left, the test does not leave:
		// the user's processes, the user and the group go by hand.
		ForceRemoveUser(id)
	})
	st, err := e.b.Provision(e.ctx(), spec)
	if err != nil {
		e.t.Fatalf("provision %s: %v", id, err)
	}
	return spec, st
}

// ForceRemoveUser ends every process of id's user and deletes the user and
// its group, with the system's own tools, without the code under test: a
// test's cleanup must work even when the backend is broken.
func ForceRemoveUser(id procmgr.InstanceID) {
	u, err := user.Lookup(id.UserName())
	if err != nil {
		return
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil || uid <= 0 {
		return
	}
	for range 3 {
		entries, _ := os.ReadDir("/proc")
		found := false
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid <= 1 {
				continue
			}
			if fi, err := os.Stat("/proc/" + e.Name()); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid {
					syscall.Kill(pid, syscall.SIGKILL)
					found = true
				}
			}
		}
		if !found {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	exec.Command("userdel", id.UserName()).Run()
	exec.Command("groupdel", id.UserName()).Run()
}

// killMaster sends SIGKILL to pid, which must be a php-fpm master: a pid of
// 0 or 1 (no restart happened, a status not read) would signal the test's
// own process group or init, so the test fails instead.
func killMaster(t *testing.T, pid int) error {
	t.Helper()
	if pid <= 1 {
		t.Fatalf("refusing to signal pid %d: not a master's PID", pid)
	}
	if cl := procCmdline(pid); !strings.Contains(cl, "php-fpm") {
		t.Fatalf("refusing to signal pid %d: %q is not php-fpm", pid, cl)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// Run runs the whole suite against the backend that f makes.
func Run(t *testing.T, f Factory) {
	RequirePHPFPM(t)
	newEnv := func(t *testing.T) *env {
		l := NewLayout(t)
		b := f(t, l)
		t.Cleanup(func() { b.Close() })
		return &env{t: t, b: b, l: l, ct: context.Background()}
	}
	for _, tc := range []struct {
		name string
		fn   func(e *env)
	}{
		{"ProvisionRunsRealMasterAsInstanceUser", testProvision},
		{"ProvisionIsIdempotent", testProvisionIdempotent},
		{"ProvisionChangedSpecReloads", testProvisionChanged},
		{"ProvisionFailureRollsBack", testRollback},
		{"KillRestartsWithNewPID", testKillRestarts},
		{"KillEventReachesSubscriber", testKillEvent},
		{"SubscribePastTheCapFails", testSubscribeCap},
		{"KillRefusesSignalWhenStopped", testKillStopped},
		{"StopRemovesSocketStartGivesNewPID", testStopStart},
		{"RestartAndReload", testRestartReload},
		{"SetLimitsLive", testSetLimits},
		{"TwoInstancesIsolated", testIsolation},
		{"DeprovisionLeavesNothing", testDeprovision},
		{"DeprovisionKeepsFilesWithoutPurge", testDeprovisionKeeps},
		{"HealthAndPoolStatus", testHealth},
		{"HealthRefusesAForeignSocket", testHealthForeignSocket},
		{"LogsAndFollow", testLogs},
		{"CrashLoopEndsFailed", testCrashLoop},
		{"StartMany", testStartMany},
		{"StartManyFallback", testStartManyFallback},
		{"ListAndNotFound", testList},
		{"PlantedSymlinkRefused", testSymlink},
		{"CleanExitIsNotRestarted", testCleanExit},
		{"StopRightAfterReload", testStopAfterReload},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(newEnv(t)) })
	}
}

func procUID(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

func procCmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(data), "\x00", " ")
}

func lookupUID(t *testing.T, id procmgr.InstanceID) (int, int) {
	t.Helper()
	u, err := user.Lookup(id.UserName())
	if err != nil {
		t.Fatalf("user of %s: %v", id, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

func testProvision(e *env) {
	t := e.t
	spec, st := e.provision("prov", procmgr.SpecInput{})
	if st.State != procmgr.StateRunning || st.MainPID <= 1 {
		t.Fatalf("after provision: state %s pid %d, want running with a PID", st.State, st.MainPID)
	}
	uid, _ := lookupUID(t, spec.ID)
	if uid < procmgr.InstanceIDMin || uid > procmgr.InstanceIDMax {
		t.Errorf("instance uid %d outside the panel's range %d-%d", uid, procmgr.InstanceIDMin, procmgr.InstanceIDMax)
	}
	if got := procUID(t, st.MainPID); got != uid {
		t.Errorf("master pid %d runs as uid %d, want the instance's uid %d", st.MainPID, got, uid)
	}
	if cl := procCmdline(st.MainPID); !strings.Contains(cl, "php-fpm: master process") {
		t.Errorf("pid %d is %q, not a php-fpm master", st.MainPID, cl)
	}
	ctx := e.ctx()
	if err := procmgr.Ping(ctx, e.l.SocketPath(spec.ID)); err != nil {
		t.Errorf("ping: %v", err)
	}
	fi, err := os.Stat(e.l.SocketPath(spec.ID))
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	for _, sub := range []string{"", "public", "tmp", "sessions"} {
		p := filepath.Join(e.l.InstanceDir(spec.ID), sub)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if s := fi.Sys().(*syscall.Stat_t); int(s.Uid) != uid {
			t.Errorf("%s owned by uid %d, want %d", p, s.Uid, uid)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s mode %v: others must have no access", p, fi.Mode())
		}
	}
	if st.Limits != spec.Limits {
		t.Errorf("limits %+v, want %+v", st.Limits, spec.Limits)
	}
	if st.Backend != e.b.Name() {
		t.Errorf("status backend %q, want %q", st.Backend, e.b.Name())
	}
}

func testProvisionIdempotent(e *env) {
	spec, st := e.provision("idem", procmgr.SpecInput{})
	st2, err := e.b.Provision(e.ctx(), spec)
	if err != nil {
		e.t.Fatalf("second provision: %v", err)
	}
	if st2.MainPID != st.MainPID || st2.Restarts != st.Restarts {
		e.t.Errorf("second provision changed the process: pid %d->%d restarts %d->%d", st.MainPID, st2.MainPID, st.Restarts, st2.Restarts)
	}
}

func testProvisionChanged(e *env) {
	spec, _ := e.provision("chg", procmgr.SpecInput{})
	spec2 := MustSpec(e.t, spec.ID, procmgr.SpecInput{PM: "static", MaxChildren: "2", Env: []string{"APP_ENV=staging"}})
	if _, err := e.b.Provision(e.ctx(), spec2); err != nil {
		e.t.Fatalf("provision changed spec: %v", err)
	}
	// The reloaded master answers as soon as its first worker is forked;
	// the rest of a static pool follows within milliseconds.
	var ps *procmgr.PoolStatus
	deadline := time.Now().Add(2 * time.Second)
	for {
		var err error
		ps, err = procmgr.FetchPoolStatus(e.ctx(), e.l.SocketPath(spec.ID))
		if err != nil {
			e.t.Fatalf("pool status: %v", err)
		}
		if (ps.ProcessManager == "static" && ps.TotalProcesses == 2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ps.ProcessManager != "static" || ps.TotalProcesses != 2 {
		e.t.Errorf("after changed spec pool is %s with %d processes, want static with 2", ps.ProcessManager, ps.TotalProcesses)
	}
}

func testRollback(e *env) {
	t := e.t
	id := NewID("rb")
	// 8.9 is well-formed but not installed: the service cannot start, so
	// provisioning fails after the user, tree and config were made.
	spec, err := procmgr.ParseSpec(string(id), procmgr.SpecInput{PHP: "8.9"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.b.Provision(ctx, spec); err == nil {
		e.b.Deprovision(ctx, id, true)
		t.Fatal("provision with a missing php-fpm succeeded")
	}
	assertGone(t, e, id, true)
}

func assertGone(t *testing.T, e *env, id procmgr.InstanceID, filesToo bool) {
	t.Helper()
	if _, err := user.Lookup(id.UserName()); err == nil {
		t.Errorf("user %s still exists", id.UserName())
	}
	if _, err := user.LookupGroup(id.UserName()); err == nil {
		t.Errorf("group %s still exists", id.UserName())
	}
	for _, p := range []string{e.l.ConfigDir(id), e.l.RuntimeDir(id)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists", p)
		}
	}
	if _, err := os.Lstat(e.l.InstanceDir(id)); filesToo && err == nil {
		t.Errorf("%s still exists", e.l.InstanceDir(id))
	}
	if _, err := e.b.Status(context.Background(), id); !errors.Is(err, procmgr.ErrNotFound) {
		t.Errorf("status after removal: %v, want ErrNotFound", err)
	}
}

// waitFor polls status until ok or the deadline.
func waitFor(e *env, id procmgr.InstanceID, d time.Duration, ok func(procmgr.Status) bool) procmgr.Status {
	deadline := time.Now().Add(d)
	var st procmgr.Status
	for time.Now().Before(deadline) {
		var err error
		st, err = e.b.Status(context.Background(), id)
		if err == nil && ok(st) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	return st
}

func testKillRestarts(e *env) {
	t := e.t
	spec, st := e.provision("kill", procmgr.SpecInput{})
	if err := e.b.Kill(e.ctx(), spec.ID, procmgr.SigKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	st2 := waitFor(e, spec.ID, time.Second, func(s procmgr.Status) bool {
		return s.State == procmgr.StateRunning && s.MainPID != 0 && s.MainPID != st.MainPID
	})
	if st2.State != procmgr.StateRunning || st2.MainPID == st.MainPID || st2.MainPID == 0 {
		t.Fatalf("1s after kill -9: state %s pid %d (old %d), want running with a new PID", st2.State, st2.MainPID, st.MainPID)
	}
	if st2.Restarts != st.Restarts+1 {
		t.Errorf("restarts %d, want %d", st2.Restarts, st.Restarts+1)
	}
	if st2.LastExit == nil || st2.LastExit.Signal != "KILL" {
		t.Errorf("last exit %+v, want signal KILL", st2.LastExit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := procmgr.WaitReady(ctx, e.l.SocketPath(spec.ID)); err != nil {
		t.Errorf("ping after restart: %v", err)
	}
}

func testKillEvent(e *env) {
	t := e.t
	spec, st := e.provision("kev", procmgr.SpecInput{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, err := e.b.Subscribe(ctx)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := killMaster(t, st.MainPID); err != nil {
		t.Fatalf("kill -9 %d: %v", st.MainPID, err)
	}
	sawDown, sawNew := false, false
	for !(sawDown && sawNew) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event channel closed")
			}
			if ev.Status.ID != spec.ID {
				continue
			}
			if ev.Status.State != procmgr.StateRunning || ev.Status.MainPID != st.MainPID {
				sawDown = true
			}
			if ev.Status.State == procmgr.StateRunning && ev.Status.MainPID != 0 && ev.Status.MainPID != st.MainPID {
				sawNew = true
			}
		case <-ctx.Done():
			t.Fatalf("no events for the kill (down seen: %v, new pid seen: %v)", sawDown, sawNew)
		}
	}
}

func testSubscribeCap(e *env) {
	t := e.t
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range procmgr.MaxSubscribers {
		if _, err := e.b.Subscribe(ctx); err != nil {
			t.Fatalf("subscriber %d of %d: %v", i+1, procmgr.MaxSubscribers, err)
		}
	}
	if ch, err := e.b.Subscribe(ctx); !errors.Is(err, procmgr.ErrTooManySubscribers) || ch != nil {
		t.Fatalf("subscriber past the cap: %v, %v; want ErrTooManySubscribers and no channel", ch, err)
	}
	cancel()
	e.b.Close()
	if _, err := e.b.Subscribe(context.Background()); !errors.Is(err, procmgr.ErrClosed) {
		t.Errorf("subscribe after Close: %v, want ErrClosed", err)
	}
}

func testKillStopped(e *env) {
	spec, _ := e.provision("kst", procmgr.SpecInput{})
	if _, err := e.b.Stop(e.ctx(), spec.ID); err != nil {
		e.t.Fatal(err)
	}
	if err := e.b.Kill(e.ctx(), spec.ID, procmgr.SigTERM); !errors.Is(err, procmgr.ErrConflict) {
		e.t.Errorf("kill of a stopped instance: %v, want ErrConflict", err)
	}
	if err := e.b.Kill(e.ctx(), NewID("nope"), procmgr.SigTERM); !errors.Is(err, procmgr.ErrNotFound) {
		e.t.Errorf("kill of an unknown instance: %v, want ErrNotFound", err)
	}
}

func testStopStart(e *env) {
	t := e.t
	spec, st := e.provision("ss", procmgr.SpecInput{})
	stopped, err := e.b.Stop(e.ctx(), spec.ID)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if stopped.State != procmgr.StateStopped || stopped.MainPID != 0 {
		t.Errorf("after stop: state %s pid %d", stopped.State, stopped.MainPID)
	}
	if _, err := os.Lstat(e.l.SocketPath(spec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v, want it gone", err)
	}
	if err := syscall.Kill(st.MainPID, 0); err == nil && strings.Contains(procCmdline(st.MainPID), "php-fpm") {
		t.Errorf("old master %d still alive after stop", st.MainPID)
	}
	if _, err := e.b.Stop(e.ctx(), spec.ID); err != nil {
		t.Errorf("stop of a stopped instance: %v, want no error", err)
	}
	started, err := e.b.Start(e.ctx(), spec.ID)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if started.State != procmgr.StateRunning || started.MainPID == 0 || started.MainPID == st.MainPID {
		t.Errorf("after start: state %s pid %d (old %d)", started.State, started.MainPID, st.MainPID)
	}
	if err := procmgr.Ping(e.ctx(), e.l.SocketPath(spec.ID)); err != nil {
		t.Errorf("ping after start: %v", err)
	}
	again, err := e.b.Start(e.ctx(), spec.ID)
	if err != nil || again.MainPID != started.MainPID {
		t.Errorf("start of a running instance: pid %d err %v, want the same pid %d and no error", again.MainPID, err, started.MainPID)
	}
}

func testRestartReload(e *env) {
	t := e.t
	spec, st := e.provision("rr", procmgr.SpecInput{})
	rs, err := e.b.Restart(e.ctx(), spec.ID)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if rs.MainPID == st.MainPID || rs.State != procmgr.StateRunning {
		t.Errorf("restart kept pid %d / state %s", rs.MainPID, rs.State)
	}
	rl, err := e.b.Reload(e.ctx(), spec.ID)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if rl.State != procmgr.StateRunning {
		t.Errorf("after reload: %s", rl.State)
	}
	if err := procmgr.Ping(e.ctx(), e.l.SocketPath(spec.ID)); err != nil {
		t.Errorf("ping after reload: %v", err)
	}
	e.b.Stop(e.ctx(), spec.ID)
	if _, err := e.b.Reload(e.ctx(), spec.ID); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("reload of a stopped instance: %v, want ErrConflict", err)
	}
	rs2, err := e.b.Restart(e.ctx(), spec.ID)
	if err != nil || rs2.State != procmgr.StateRunning {
		t.Errorf("restart of a stopped instance: %v state %s", err, rs2.State)
	}
}

func testSetLimits(e *env) {
	t := e.t
	spec, st := e.provision("lim", procmgr.SpecInput{})
	want := procmgr.Limits{MemoryMax: 300 << 20, CPUQuota: 40, TasksMax: 50}
	got, err := e.b.SetLimits(e.ctx(), spec.ID, want)
	if err != nil {
		t.Fatalf("set limits: %v", err)
	}
	if got.Limits != want {
		t.Errorf("limits %+v, want %+v", got.Limits, want)
	}
	if got.MainPID != st.MainPID {
		t.Errorf("set limits restarted the master: pid %d -> %d", st.MainPID, got.MainPID)
	}
}

func testIsolation(e *env) {
	t := e.t
	a, _ := e.provision("a", procmgr.SpecInput{})
	b, _ := e.provision("b", procmgr.SpecInput{})
	auid, agid := lookupUID(t, a.ID)
	buid, _ := lookupUID(t, b.ID)
	if auid == buid {
		t.Fatalf("two instances share uid %d", auid)
	}
	marker := filepath.Join(e.l.PublicDir(b.ID), "secret.txt")
	if err := os.WriteFile(marker, []byte("b only"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown(marker, buid, buid)
	for _, target := range []string{e.l.InstanceDir(b.ID), marker, e.l.SocketPath(b.ID)} {
		cmd := exec.Command("/bin/cat", target)
		if strings.HasSuffix(target, b.ID.UserName()) || target == e.l.InstanceDir(b.ID) {
			cmd = exec.Command("/bin/ls", target)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(auid), Gid: uint32(agid)}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("user of %s read %s: %q", a.ID, target, out)
		} else if !strings.Contains(string(out), "Permission denied") {
			t.Errorf("user of %s reading %s: %v %q, want Permission denied", a.ID, target, err, out)
		}
	}
}

func testDeprovision(e *env) {
	t := e.t
	id := NewID("rm")
	spec := MustSpec(t, id, procmgr.SpecInput{})
	st, err := e.b.Provision(e.ctx(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Deprovision(e.ctx(), id, true); err != nil {
		t.Fatalf("deprovision: %v", err)
	}
	assertGone(t, e, id, true)
	if err := syscall.Kill(st.MainPID, 0); err == nil && strings.Contains(procCmdline(st.MainPID), "php-fpm") {
		t.Errorf("master %d alive after deprovision", st.MainPID)
	}
	if err := e.b.Deprovision(e.ctx(), id, true); err != nil {
		t.Errorf("deprovision of an absent instance: %v, want no error", err)
	}
}

func testDeprovisionKeeps(e *env) {
	t := e.t
	id := NewID("keep")
	if _, err := e.b.Provision(e.ctx(), MustSpec(t, id, procmgr.SpecInput{})); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(e.l.PublicDir(id), "index.php")
	if err := os.WriteFile(page, []byte("<?php echo 1;"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Deprovision(e.ctx(), id, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(e.l.InstanceDir(id)) })
	assertGone(t, e, id, false)
	fi, err := os.Lstat(page)
	if err != nil {
		t.Fatalf("site files removed without purge: %v", err)
	}
	// A later instance given the same uid must not own them.
	if s := fi.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != 0 {
		t.Errorf("kept file owned by %d:%d, want root", s.Uid, s.Gid)
	}
	// A new instance of the same id is not handed the kept files.
	if _, err := e.b.Provision(e.ctx(), MustSpec(t, id, procmgr.SpecInput{})); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("provision over kept files: %v, want ErrConflict", err)
		e.b.Deprovision(e.ctx(), id, false)
	}
	assertGone(t, e, id, false)
	if fi, err := os.Lstat(page); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("kept files changed by a refused provision: %v", err)
	}
}

func testHealth(e *env) {
	t := e.t
	// The one health check is procmgr.ProbeHealth over the socket; a
	// backend that answered for its pools itself would bypass it.
	if _, ok := e.b.(procmgr.HealthProber); ok {
		t.Fatalf("%s implements procmgr.HealthProber; a real backend is probed over the socket", e.b.Name())
	}
	spec, _ := e.provision("hl", procmgr.SpecInput{PM: "static", MaxChildren: "3"})
	var h procmgr.Health
	// A static pool answers once its first worker is forked; the others
	// follow within milliseconds.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var err error
		if h, err = procmgr.ProbeHealth(e.ctx(), e.b, e.l, spec.ID); err != nil {
			t.Fatal(err)
		}
		if (h.Pool != nil && h.Pool.TotalProcesses == 3) || time.Now().After(deadline) {
			break
		}
	}
	if !h.Healthy || h.Pool == nil {
		t.Fatalf("health %+v, want healthy with pool status", h)
	}
	if h.Pool.Pool != string(spec.ID) || h.Pool.ProcessManager != "static" || h.Pool.TotalProcesses != 3 {
		t.Errorf("pool %+v, want pool %s static with 3 processes", h.Pool, spec.ID)
	}
	e.b.Stop(e.ctx(), spec.ID)
	h2, err := procmgr.ProbeHealth(e.ctx(), e.b, e.l, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Healthy || h2.Reason == "" {
		t.Errorf("health of a stopped instance %+v, want unhealthy with a reason", h2)
	}
}

func testLogs(e *env) {
	t := e.t
	if _, ok := e.b.(procmgr.LogReader); !ok {
		t.Fatalf("%s does not implement procmgr.LogReader: every panel backend keeps logs", e.b.Name())
	}
	spec, _ := e.provision("lg", procmgr.SpecInput{})
	var lines []procmgr.LogLine
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		lines, err = procmgr.ReadLogs(e.ctx(), e.b, spec.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		if containsLine(lines, "ready to handle connections") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !containsLine(lines, "ready to handle connections") {
		t.Fatalf("logs lack php-fpm's start line: %+v", lines)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := procmgr.FollowLogs(ctx, e.b, spec.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A reload makes php-fpm log new lines.
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.b.Reload(ctx, spec.ID)
	}()
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatal("follow ended before the reload was logged")
			}
			if strings.Contains(l.Text, "Reloading in progress") || strings.Contains(l.Text, "reloading") {
				return
			}
		case <-ctx.Done():
			t.Fatal("follow saw no reload line")
		}
	}
}

func containsLine(lines []procmgr.LogLine, s string) bool {
	for _, l := range lines {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

func testCrashLoop(e *env) {
	t := e.t
	spec, st := e.provision("cl", procmgr.SpecInput{})
	pid := st.MainPID
	// Each kill is a crash; the policy allows five restarts in ten seconds.
	for i := 0; i < 10; i++ {
		if err := killMaster(t, pid); err != nil {
			break
		}
		next := waitFor(e, spec.ID, 2*time.Second, func(s procmgr.Status) bool {
			return (s.MainPID != 0 && s.MainPID != pid && s.State == procmgr.StateRunning) || s.State == procmgr.StateFailed
		})
		if next.State == procmgr.StateFailed {
			if next.LastExit == nil || next.LastExit.Result == "" {
				t.Errorf("failed without an exit reason: %+v", next)
			}
			if next.Restarts < 4 {
				t.Errorf("failed after %d restarts, want the policy's 5", next.Restarts)
			}
			// A person's start resets the limit.
			if st, err := e.b.Start(e.ctx(), spec.ID); err != nil || st.State != procmgr.StateRunning {
				t.Errorf("start after crash loop: %v %s", err, st.State)
			}
			return
		}
		pid = next.MainPID
	}
	t.Fatalf("ten crashes in a row and the instance is not failed")
}

// testStartMany starts stopped instances (and one already running) with
// StartAll: in one batch when the backend is a procmgr.BatchStarter.
func testStartMany(e *env) { startAll(e, e.b) }

// testStartManyFallback is testStartMany through StartAll's fallback, one
// Start at a time, as for a backend that is no BatchStarter.
func testStartManyFallback(e *env) {
	startAll(e, struct{ procmgr.Backend }{e.b}) // only the core's methods
}

func startAll(e *env, b procmgr.Starter) {
	t := e.t
	var ids []procmgr.InstanceID
	for i := 0; i < 3; i++ {
		spec, _ := e.provision(fmt.Sprintf("m%d", i), procmgr.SpecInput{})
		if i > 0 {
			if _, err := e.b.Stop(e.ctx(), spec.ID); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, spec.ID)
	}
	if err := errors.Join(procmgr.StartAll(e.ctx(), b, ids)...); err != nil {
		t.Fatalf("start all: %v", err)
	}
	for _, id := range ids {
		st := waitFor(e, id, 5*time.Second, func(s procmgr.Status) bool { return s.State == procmgr.StateRunning })
		if st.State != procmgr.StateRunning || st.MainPID == 0 {
			t.Errorf("%s after start all: %s pid %d", id, st.State, st.MainPID)
		}
	}
	// An absent instance fails, and only it.
	missing := NewID("nx")
	errs := procmgr.StartAll(e.ctx(), b, append(ids, missing))
	if err := errs[len(ids)]; !errors.Is(err, procmgr.ErrNotFound) || !strings.Contains(err.Error(), string(missing)) {
		t.Errorf("start all with an absent instance: %v, want ErrNotFound naming %s", err, missing)
	}
	if err := errors.Join(errs[:len(ids)]...); err != nil {
		t.Errorf("start all with an absent instance failed the others too: %v", err)
	}
	for _, id := range ids {
		if st, err := e.b.Status(e.ctx(), id); err != nil || st.State != procmgr.StateRunning {
			t.Errorf("%s after a second start all: %v %s", id, err, st.State)
		}
	}
}

func testList(e *env) {
	t := e.t
	a, _ := e.provision("la", procmgr.SpecInput{})
	b, _ := e.provision("lb", procmgr.SpecInput{})
	list, err := e.b.List(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[procmgr.InstanceID]bool{}
	for _, s := range list {
		seen[s.ID] = s.State == procmgr.StateRunning && s.MainPID > 0
	}
	if !seen[a.ID] || !seen[b.ID] || len(list) != 2 {
		t.Errorf("list %+v, want exactly %s and %s running", list, a.ID, b.ID)
	}
	if _, err := e.b.Status(e.ctx(), NewID("none")); !errors.Is(err, procmgr.ErrNotFound) {
		t.Errorf("status of unknown: %v, want ErrNotFound", err)
	}
}

func testSymlink(e *env) {
	t := e.t
	spec, _ := e.provision("sym", procmgr.SpecInput{})
	// The tenant replaces tmp/ with a link to a root-owned directory; a new
	// provision must not chown what the link points at.
	victim := filepath.Join(filepath.Dir(e.l.InstancesRoot), "victim-"+RandomHex(4))
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(victim)
	tmp := e.l.TmpDir(spec.ID)
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, tmp); err != nil {
		t.Fatal(err)
	}
	spec2 := MustSpec(t, spec.ID, procmgr.SpecInput{MaxChildren: "6"})
	if _, err := e.b.Provision(e.ctx(), spec2); err == nil {
		t.Errorf("provision over a planted symlink succeeded")
	}
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if s := fi.Sys().(*syscall.Stat_t); s.Uid != 0 || fi.Mode().Perm() != 0o700 {
		t.Errorf("symlink target was changed: uid %d mode %v", s.Uid, fi.Mode())
	}
	os.Remove(tmp)
}

// Restart=on-failure: a master that exits cleanly (php-fpm's answer to
// SIGTERM) leaves the instance stopped, not restarted.
func testCleanExit(e *env) {
	t := e.t
	spec, st := e.provision("term", procmgr.SpecInput{})
	if err := e.b.Kill(e.ctx(), spec.ID, procmgr.SigTERM); err != nil {
		t.Fatal(err)
	}
	// The exit reaches the backend as an event just after the state does.
	got := waitFor(e, spec.ID, 2*time.Second, func(s procmgr.Status) bool {
		return s.State == procmgr.StateStopped && s.LastExit != nil
	})
	if got.State != procmgr.StateStopped || got.MainPID != 0 || got.Restarts != st.Restarts {
		t.Fatalf("after SIGTERM: state %s pid %d restarts %d, want stopped with no restart", got.State, got.MainPID, got.Restarts)
	}
	if got.LastExit == nil || got.LastExit.Result != "success" {
		t.Errorf("last exit %+v, want success", got.LastExit)
	}
	time.Sleep(200 * time.Millisecond)
	if again, _ := e.b.Status(e.ctx(), spec.ID); again.State != procmgr.StateStopped {
		t.Errorf("restarted after a clean exit: %s", again.State)
	}
}

// php-fpm loses a signal that arrives while it re-executes itself for a
// reload; a stop right after a reload must still end in moments, not after
// the stop timeout.
func testStopAfterReload(e *env) {
	t := e.t
	spec, _ := e.provision("sar", procmgr.SpecInput{})
	for _, after := range []time.Duration{0, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond} {
		if err := e.b.Kill(e.ctx(), spec.ID, procmgr.SigUSR2); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		t0 := time.Now()
		stopped, err := e.b.Stop(e.ctx(), spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(t0); took > 3*time.Second || stopped.State != procmgr.StateStopped {
			t.Fatalf("stop %v after a reload: state %s after %v", after, stopped.State, took)
		}
		if _, err := e.b.Start(e.ctx(), spec.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// The socket's directory is the tenant's to write: a socket path that leads
// to another instance's pool must not report that pool as this one's.
func testHealthForeignSocket(e *env) {
	t := e.t
	a, _ := e.provision("fa", procmgr.SpecInput{})
	b, _ := e.provision("fb", procmgr.SpecInput{})
	sock := e.l.SocketPath(a.ID)
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e.l.SocketPath(b.ID), sock); err != nil {
		t.Fatal(err)
	}
	h, err := procmgr.ProbeHealth(e.ctx(), e.b, e.l, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h.Healthy || h.Pool != nil || !strings.Contains(h.Reason, "not served by the instance's master") {
		t.Errorf("health through another instance's socket: %+v, want unhealthy naming the wrong server", h)
	}
	if hb, _ := procmgr.ProbeHealth(e.ctx(), e.b, e.l, b.ID); !hb.Healthy {
		t.Errorf("the other instance's own health: %+v", hb)
	}
}
