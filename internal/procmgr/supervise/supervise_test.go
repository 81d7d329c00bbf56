package supervise_test

import (
	"context"
	"encoding/json"
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
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/procmgr/supervise"
)

func TestConformance(t *testing.T) {
	procmgrtest.Run(t, func(t *testing.T, l procmgr.Layout) procmgr.Backend {
		return open(t, options(t, l))
	})
}

// A panel restart leaves masters serving; the next panel adopts the live
// ones (same PID, no second copy), starts the dead ones, reads the adopted
// masters' output, and restarts an adopted master that crashes.
func TestAdoptAfterPanelRestart(t *testing.T) {
	l, opt := setup(t)
	s := newSession(t, opt)
	a, stA := provision(t, s, "ada", procmgr.SpecInput{})
	d, stD := provision(t, s, "add", procmgr.SpecInput{})
	ctx := ctxFor(t)

	if err := s.b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []procmgr.InstanceID{a.ID, d.ID} {
		if err := procmgr.Ping(ctx, l.SocketPath(id)); err != nil {
			t.Fatalf("%s does not serve after the panel closed: %v", id, err)
		}
	}
	// d's master dies while no panel watches.
	if err := syscall.Kill(-stD.MainPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, stD.MainPID)

	s.b = mustNew(t, opt)
	b2 := s.b
	sa, err := b2.Status(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sa.State != procmgr.StateRunning || sa.MainPID != stA.MainPID {
		t.Fatalf("after the panel restart %s: %s, want running with the same pid %d", a.ID, describe(sa), stA.MainPID)
	}
	if ms := masters(l.FPMConfigPath(a.ID)); len(ms) != 1 || ms[0] != stA.MainPID {
		t.Errorf("php-fpm masters of %s: %v, want only %d", a.ID, ms, stA.MainPID)
	}
	sd, err := b2.Status(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sd.State != procmgr.StateRunning || sd.MainPID == 0 || sd.MainPID == stD.MainPID {
		t.Fatalf("after the panel restart %s: %s, want running with a new pid (old %d)", d.ID, describe(sd), stD.MainPID)
	}
	if err := procmgr.Ping(ctx, l.SocketPath(d.ID)); err != nil {
		t.Errorf("ping %s after its restart: %v", d.ID, err)
	}
	if ms := masters(l.FPMConfigPath(d.ID)); len(ms) != 1 {
		t.Errorf("php-fpm masters of %s: %v, want one", d.ID, ms)
	}

	// History from before the restart is there, from the log file.
	lines, err := b2.Logs(ctx, a.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(lines, "ready to handle connections") {
		t.Errorf("logs of %s after the panel restart lack the start lines: %+v", a.ID, lines)
	}
	// The adopted master still writes into the FIFO, which the new panel
	// reads: a reload's lines come through.
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	follow, err := b2.FollowLogs(fctx, a.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Reload(ctx, a.ID); err != nil {
		t.Fatalf("reload of the adopted master: %v", err)
	}
	if !sawLine(follow, "Reloading in progress") {
		t.Errorf("no reload line from the adopted master in FollowLogs")
	}
	fcancel()

	// A crash of the adopted master is seen through its pidfd and
	// restarted as a child of this panel.
	if err := syscall.Kill(stA.MainPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sa2 := waitStatus(t, b2, a.ID, 2*time.Second, func(s procmgr.Status) bool {
		return s.State == procmgr.StateRunning && s.MainPID != 0 && s.MainPID != stA.MainPID
	})
	if sa2.State != procmgr.StateRunning || sa2.MainPID == stA.MainPID || sa2.Restarts != sa.Restarts+1 {
		t.Fatalf("after kill -9 of the adopted master: %s, want running with a new pid and restarts %d", describe(sa2), sa.Restarts+1)
	}
	t.Logf("the adopted master's exit as seen through its pidfd: %+v", sa2.LastExit)
	if sa2.LastExit == nil || (sa2.LastExit.Result != "signal" && sa2.LastExit.Result != "unknown") {
		t.Errorf("last exit of the adopted master %+v, want signal (or unknown: not our child)", sa2.LastExit)
	}
	if err := procmgr.Ping(ctx, l.SocketPath(a.ID)); err != nil {
		t.Errorf("ping after the restart of the adopted master: %v", err)
	}
	if ms := masters(l.FPMConfigPath(a.ID)); len(ms) != 1 || ms[0] != sa2.MainPID {
		t.Errorf("php-fpm masters of %s: %v, want only %d", a.ID, ms, sa2.MainPID)
	}
}

// A panel killed with SIGKILL (no Close) leaves its masters serving, and a
// panel in another process adopts them: the masters are not its children,
// so their end is seen through the pidfd alone.
func TestAdoptFromKilledPanelProcess(t *testing.T) {
	l, opt := setup(t)
	id := procmgrtest.NewID("xp")
	hopt := opt
	hopt.Log = nil // not data
	enc, err := json.Marshal(helperArgs{Opt: hopt, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(os.Args[0])
	helper.Env = append(os.Environ(), helperEnv+"="+string(enc))
	out, err := helper.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper panel: %v, want it killed by SIGKILL; output:\n%s", err, out)
	}
	var pid int
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "MASTER "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid == 0 {
		t.Fatalf("helper printed no master pid:\n%s", out)
	}
	s := newSession(t, opt)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.b.Deprovision(ctx, id, true); err != nil {
			t.Errorf("cleanup: deprovision %s: %v", id, err)
		}
	})
	ctx := ctxFor(t)
	st, err := s.b.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != procmgr.StateRunning || st.MainPID != pid {
		t.Fatalf("after the panel was killed: %s, want running with the same pid %d", describe(st), pid)
	}
	if ms := masters(l.FPMConfigPath(id)); len(ms) != 1 {
		t.Errorf("php-fpm masters: %v, want one", ms)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st2 := waitStatus(t, s.b, id, 2*time.Second, func(s procmgr.Status) bool {
		return s.State == procmgr.StateRunning && s.MainPID != 0 && s.MainPID != pid
	})
	if st2.State != procmgr.StateRunning || st2.Restarts != st.Restarts+1 {
		t.Fatalf("after kill -9 of the adopted master: %s", describe(st2))
	}
	t.Logf("exit of a master that is not the panel's child: %+v", st2.LastExit)
	if err := procmgr.Ping(ctx, l.SocketPath(id)); err != nil {
		t.Errorf("ping: %v", err)
	}
}

type helperArgs struct {
	Opt supervise.Options
	ID  procmgr.InstanceID
}

// runHelperPanel is the panel that TestAdoptFromKilledPanelProcess runs in
// a process of its own (see TestMain): it provisions one instance, prints
// its master's PID and kills itself with SIGKILL, as a crashing panel would.
func runHelperPanel(raw string) {
	var args helperArgs
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	b, err := supervise.New(context.Background(), args.Opt)
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	spec, err := procmgr.ParseSpec(string(args.ID), procmgr.SpecInput{}, nil)
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	st, err := b.Provision(context.Background(), spec)
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	fmt.Printf("MASTER %d\n", st.MainPID)
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

func contains(lines []procmgr.LogLine, s string) bool {
	for _, l := range lines {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

func sawLine(ch <-chan procmgr.LogLine, s string) bool {
	for l := range ch {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

// A state file naming a live process that is not the master (a reused PID)
// must not be adopted, nor the process killed: a real master is started.
func TestRecycledPIDNotAdopted(t *testing.T) {
	l, opt := setup(t)
	s := newSession(t, opt)
	spec, st := provision(t, s, "rpid", procmgr.SpecInput{})
	ctx := ctxFor(t)
	u, err := user.Lookup(spec.ID.UserName())
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if _, err := s.b.Stop(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		wrongTime bool
	}{
		{"wrong start time", true},
		{"right start time, not a php-fpm master", false},
	} {
		// The stranger runs as the instance user and leads its own
		// process group, as a master would: only the start time and the
		// command line tell it apart. It is started after the stop (a
		// stop ends every process of the instance's user).
		sleep := exec.Command("/bin/sleep", "60")
		sleep.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if err := sleep.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { sleep.Process.Kill(); sleep.Wait() }()
		_, _, ticks, ok := procStat(sleep.Process.Pid)
		if !ok {
			t.Fatal("no /proc entry of sleep")
		}
		if tc.wrongTime {
			ticks++
		}
		state := map[string]any{"pid": sleep.Process.Pid, "start_ticks": ticks, "restarts": 0, "running": true, "limits": spec.Limits}
		data, _ := json.Marshal(state)
		if err := os.WriteFile(filepath.Join(opt.StateDir, string(spec.ID)+".json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		// The panel restarts and finds the state file.
		s.restart(t)
		nb := s.b
		got, err := nb.Status(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.MainPID == sleep.Process.Pid {
			t.Errorf("%s: the stranger %d was adopted", tc.name, sleep.Process.Pid)
		}
		if !alive(sleep.Process.Pid) {
			t.Fatalf("%s: the stranger %d was killed", tc.name, sleep.Process.Pid)
		}
		if got.State != procmgr.StateRunning || got.MainPID == 0 || got.MainPID == st.MainPID {
			t.Errorf("%s: %s, want running with a new master", tc.name, describe(got))
		}
		if cl := cmdline(got.MainPID); !strings.HasPrefix(cl, "php-fpm: master process") {
			t.Errorf("%s: pid %d is %q, not a php-fpm master", tc.name, got.MainPID, cl)
		}
		if err := procmgr.Ping(ctx, l.SocketPath(spec.ID)); err != nil {
			t.Errorf("%s: ping: %v", tc.name, err)
		}
		if _, err := nb.Stop(ctx, spec.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// A master that cannot start ends failed with the start limit's result after
// exactly five starts, with the exit code it died with; a start after the
// fix resets the limit.
func TestCrashLoopStatus(t *testing.T) {
	l, opt := setup(t)
	s := newSession(t, opt)
	b := s.b
	spec, _ := provision(t, s, "loop", procmgr.SpecInput{})
	ctx := ctxFor(t)
	if _, err := b.Stop(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	conf := l.FPMConfigPath(spec.ID)
	good, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	// php-fpm refuses a config it cannot parse with exit code 78.
	if err := os.WriteFile(conf, append(append([]byte(nil), good...), []byte("\nthis is not = an ini line [\n")...), 0o640); err != nil {
		t.Fatal(err)
	}
	started := func() int {
		lines, err := b.Logs(ctx, spec.ID, 2000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range lines {
			if strings.Contains(l.Text, "Started php-fpm master") {
				n++
			}
		}
		return n
	}
	before := started()
	evctx, evcancel := context.WithCancel(ctx)
	events, err := b.Subscribe(evctx)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := b.Start(ctx, spec.ID); err == nil {
		t.Fatal("start with a broken config succeeded")
	}
	st := waitStatus(t, b, spec.ID, 5*time.Second, func(s procmgr.Status) bool { return s.State == procmgr.StateFailed })
	took := time.Since(t0)
	if st.State != procmgr.StateFailed {
		t.Fatalf("after a crash loop: %s, want failed", describe(st))
	}
	if st.LastExit == nil || st.LastExit.Result != "start-limit-hit" || st.LastExit.Code != 78 {
		t.Errorf("last exit %+v, want start-limit-hit with exit code 78", st.LastExit)
	}
	if st.Restarts != 4 {
		t.Errorf("restarts %d, want 4 (five starts)", st.Restarts)
	}
	if n := started() - before; n != 5 {
		t.Errorf("%d starts, want 5", n)
	}
	t.Logf("five starts and failed in %v", took)
	evcancel()
	sawLoop := false
	for ev := range events {
		if ev.Status.ID == spec.ID && ev.Status.State == procmgr.StateCrashLooping &&
			ev.Status.LastExit != nil && ev.Status.LastExit.Result == "exit-code" && ev.Status.LastExit.Code == 78 {
			sawLoop = true
		}
	}
	if !sawLoop {
		t.Errorf("no crash-looping event with exit code 78")
	}
	// No more restarts once failed.
	time.Sleep(300 * time.Millisecond)
	if n := started() - before; n != 5 {
		t.Errorf("%d starts after the start limit was hit, want still 5", n)
	}
	if err := os.WriteFile(conf, good, 0o640); err != nil {
		t.Fatal(err)
	}
	st, err = b.Start(ctx, spec.ID)
	if err != nil || st.State != procmgr.StateRunning {
		t.Fatalf("start after the fix: %v, %s", err, describe(st))
	}
	if st.Restarts != 0 {
		t.Errorf("restarts %d after a person's start, want 0", st.Restarts)
	}
}

// Limits are enforced through cgroups where the host allows, and noted in the
// status where it does not.
func TestLimitsEnforcedOrNoted(t *testing.T) {
	want := procmgr.Limits{MemoryMax: 300 << 20, CPUQuota: 40, TasksMax: 50}
	t.Run("ThisHost", func(t *testing.T) {
		_, opt := setup(t)
		s := newSession(t, opt)
		b := s.b
		spec, _ := provision(t, s, "lim", procmgr.SpecInput{PM: "static", MaxChildren: "2"})
		ctx := ctxFor(t)
		st, err := b.SetLimits(ctx, spec.ID, want)
		if err != nil {
			t.Fatal(err)
		}
		if st.Limits != want {
			t.Errorf("limits %+v, want %+v", st.Limits, want)
		}
		// The pool forks its two workers right after the first answers.
		var workers []int
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if workers = children(st.MainPID); len(workers) == 2 {
				break
			}
		}
		if len(workers) != 2 {
			t.Fatalf("master %d has workers %v, want 2", st.MainPID, workers)
		}
		pure := exists(filepath.Join(cgroupRoot, "cgroup.controllers"))
		v1 := !pure && exists(filepath.Join(cgroupRoot, "memory", "memory.limit_in_bytes")) &&
			exists(filepath.Join(cgroupRoot, "cpu", "cpu.cfs_quota_us")) && exists(filepath.Join(cgroupRoot, "pids", "pids.max"))
		if v1 && len(st.Notes) != 0 {
			t.Errorf("this host has writable v1 memory, cpu and pids cgroups, but: %q", st.Notes)
		}
		rel := "/" + opt.CgroupParent + "/" + string(spec.ID)
		check := func(lim, ctrl, file, value string) {
			for _, n := range st.Notes {
				if strings.HasPrefix(n, lim+" not enforced") {
					t.Logf("not enforced here: %s", n)
					return
				}
			}
			dir := filepath.Join(cgroupRoot, ctrl, rel)
			if pure {
				dir = filepath.Join(cgroupRoot, rel)
			}
			got, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Errorf("%s: %v", lim, err)
				return
			}
			if strings.TrimSpace(string(got)) != value {
				t.Errorf("%s/%s = %q, want %q", dir, file, strings.TrimSpace(string(got)), value)
			}
			for _, pid := range append([]int{st.MainPID}, workers...) {
				if got := cgroupOf(pid, ctrl, pure); got != rel {
					t.Errorf("pid %d is in %s cgroup %q, want %q", pid, ctrl, got, rel)
				}
			}
			// Nothing else, the panel least of all (the master is forked
			// from a thread placed in the cgroups, see startIn).
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if got := len(strings.Fields(string(procs))); got != 1+len(workers) {
				t.Errorf("%s holds %q, want only the master %d and workers %v", dir, procs, st.MainPID, workers)
			}
		}
		if pure {
			check("memory_max", "memory", "memory.max", "314572800")
			check("cpu_quota", "cpu", "cpu.max", "1000 2500")
			check("tasks_max", "pids", "pids.max", "50")
		} else {
			check("memory_max", "memory", "memory.limit_in_bytes", "314572800")
			check("cpu_quota", "cpu", "cpu.cfs_quota_us", "1000")
			check("cpu_quota", "cpu", "cpu.cfs_period_us", "2500")
			check("tasks_max", "pids", "pids.max", "50")
		}
		got, err := b.Status(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if v1 && (got.MemoryBytes == 0 || got.Tasks < 3) {
			t.Errorf("usage not read from the cgroups: memory %d tasks %d", got.MemoryBytes, got.Tasks)
		}
		t.Logf("usage: memory %d bytes, cpu %v, tasks %d", got.MemoryBytes, got.CPUUsage, got.Tasks)
	})
	t.Run("NoCgroups", func(t *testing.T) {
		l, opt := setup(t)
		// A directory with no cgroup hierarchy in it: nothing can be
		// enforced, and the status must say so.
		opt.CgroupRoot = filepath.Join(filepath.Dir(l.InstancesRoot), "no-cgroups")
		if err := os.MkdirAll(opt.CgroupRoot, 0o755); err != nil {
			t.Fatal(err)
		}
		s := newSession(t, opt)
		b := s.b
		spec, st0 := provision(t, s, "nocg", procmgr.SpecInput{PM: "static", MaxChildren: "2"})
		ctx := ctxFor(t)
		st, err := b.SetLimits(ctx, spec.ID, want)
		if err != nil {
			t.Fatal(err)
		}
		if st.Limits != want {
			t.Errorf("limits %+v, want what was asked %+v", st.Limits, want)
		}
		for _, lim := range []string{"memory_max", "cpu_quota", "tasks_max"} {
			found := false
			for _, n := range st.Notes {
				found = found || strings.HasPrefix(n, lim+" not enforced:")
			}
			if !found {
				t.Errorf("notes %q do not say that %s is not enforced", st.Notes, lim)
			}
		}
		if st.MainPID != st0.MainPID {
			t.Errorf("set limits restarted the master: %d -> %d", st0.MainPID, st.MainPID)
		}
		// Without cgroups the process group is what gets killed: a
		// crash must not leave workers serving.
		var workers []int
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if workers = children(st.MainPID); len(workers) == 2 {
				break
			}
		}
		if err := syscall.Kill(st.MainPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		st2 := waitStatus(t, b, spec.ID, 2*time.Second, func(s procmgr.Status) bool {
			return s.State == procmgr.StateRunning && s.MainPID != st.MainPID && s.MainPID != 0
		})
		if st2.State != procmgr.StateRunning {
			t.Fatalf("after kill -9 without cgroups: %s", describe(st2))
		}
		for _, w := range workers {
			if alive(w) {
				t.Errorf("worker %d of the killed master still alive", w)
			}
		}
	})
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func children(pid int) []int {
	p := strconv.Itoa(pid)
	data, _ := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
	var out []int
	for _, f := range strings.Fields(string(data)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// cgroupOf is pid's cgroup in the hierarchy of ctrl (v1), or its v2 cgroup.
func cgroupOf(pid int, ctrl string, pure bool) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if pure && f[0] == "0" {
			return f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if !pure && c == ctrl {
				return f[2]
			}
		}
	}
	return ""
}

// The backend refuses bad options before touching the host.
func TestOptionsValidated(t *testing.T) {
	l, opt := setup(t)
	_ = l
	for _, bad := range []supervise.Options{
		func() supervise.Options { o := opt; o.CgroupParent = "../escape"; return o }(),
		func() supervise.Options { o := opt; o.StateDir = "relative/state"; return o }(),
	} {
		b, err := supervise.New(context.Background(), bad)
		if err == nil {
			b.Close()
			t.Errorf("options %+v accepted", bad)
		} else if !errors.Is(err, procmgr.ErrInvalid) {
			t.Errorf("options error %v, want ErrInvalid", err)
		}
	}
}

// php-fpm loses a SIGQUIT that arrives while it re-executes itself for a
// reload; a stop right after a reload must still end in moments, not at the
// 30 s stop timeout.
func TestStopRightAfterReload(t *testing.T) {
	_, opt := setup(t)
	s := newSession(t, opt)
	spec, _ := provision(t, s, "sar", procmgr.SpecInput{})
	ctx := ctxFor(t)
	// The window is about a millisecond after php-fpm handles SIGUSR2.
	for _, after := range []time.Duration{0, 500 * time.Microsecond, time.Millisecond, 1500 * time.Microsecond, 2 * time.Millisecond, 3 * time.Millisecond} {
		if err := s.b.Kill(ctx, spec.ID, procmgr.SigUSR2); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		t0 := time.Now()
		stopped, err := s.b.Stop(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		t.Logf("stop %v after a reload took %v", after, took)
		if took > 3*time.Second || stopped.State != procmgr.StateStopped {
			t.Fatalf("stop right after a reload: %s after %v", describe(stopped), took)
		}
		if stopped.LastExit == nil || stopped.LastExit.Result != "success" {
			t.Errorf("stop ended the master with %+v, want a clean exit", stopped.LastExit)
		}
		if _, err := s.b.Start(ctx, spec.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// Restart=on-failure: a master that exits cleanly (php-fpm's answer to a
// person's SIGTERM) leaves the instance stopped, not restarted.
func TestCleanExitIsNotRestarted(t *testing.T) {
	_, opt := setup(t)
	s := newSession(t, opt)
	spec, st := provision(t, s, "term", procmgr.SpecInput{})
	ctx := ctxFor(t)
	if err := s.b.Kill(ctx, spec.ID, procmgr.SigTERM); err != nil {
		t.Fatal(err)
	}
	got := waitStatus(t, s.b, spec.ID, 2*time.Second, func(s procmgr.Status) bool { return s.State == procmgr.StateStopped })
	if got.State != procmgr.StateStopped || got.MainPID != 0 || got.Restarts != st.Restarts {
		t.Fatalf("after SIGTERM: %s, want stopped with no restart", describe(got))
	}
	if got.LastExit == nil || got.LastExit.Result != "success" {
		t.Errorf("last exit %+v, want success", got.LastExit)
	}
	time.Sleep(200 * time.Millisecond)
	if again, _ := s.b.Status(ctx, spec.ID); again.State != procmgr.StateStopped {
		t.Errorf("restarted after a clean exit: %s", describe(again))
	}
	if err := s.b.Kill(ctx, spec.ID, procmgr.SigTERM); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("kill with no master: %v, want ErrConflict", err)
	}
}
