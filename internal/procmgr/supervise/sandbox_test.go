package supervise_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
)

// runScript writes a PHP script into the instance's public/ and runs it
// through its pool.
func runScript(t *testing.T, l procmgr.Layout, id procmgr.InstanceID, name, code string) string {
	t.Helper()
	script := filepath.Join(l.PublicDir(id), name)
	if err := os.WriteFile(script, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := fcgi.Do(ctx, l.SocketPath(id), fcgi.Request{Params: map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
		"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/" + name, "REQUEST_URI": "/" + name,
	}})
	if err != nil {
		t.Fatalf("running %s in %s: %v", name, id, err)
	}
	return string(resp.Body)
}

// procStatus returns a field of /proc/<pid>/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pid %d has no %s", pid, field)
	return ""
}

// sessionOf returns the session id of pid.
func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	f, ok := statFields(pid)
	if !ok {
		t.Fatalf("no /proc entry of %d", pid)
	}
	sid, _ := strconv.Atoi(f[3])
	return sid
}

// A supervised master and its workers run with no_new_privs (no setuid
// binary can raise them) and in a session of their own (the master leads
// it), away from the panel's.
func TestSupervisedMastersNoNewPrivsOwnSession(t *testing.T) {
	_, opt := setup(t)
	s := newSession(t, opt)
	spec, st := provision(t, s, "nnp", procmgr.SpecInput{PM: "static", MaxChildren: "2"})
	if st.MainPID <= 1 {
		t.Fatalf("no master pid: %+v", st)
	}
	var workers []int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && len(workers) < 2; time.Sleep(10 * time.Millisecond) {
		workers = children(st.MainPID)
	}
	if len(workers) < 2 {
		t.Fatalf("master %d of %s has workers %v, want 2", st.MainPID, spec.ID, workers)
	}
	for _, pid := range append([]int{st.MainPID}, workers...) {
		if got := procStatus(t, pid, "NoNewPrivs"); got != "1" {
			t.Errorf("pid %d: NoNewPrivs %s, want 1", pid, got)
		}
		if sid := sessionOf(t, pid); sid != st.MainPID {
			t.Errorf("pid %d is in session %d, want the master's own %d", pid, sid, st.MainPID)
		}
	}
	if sid := sessionOf(t, os.Getpid()); sid == st.MainPID {
		t.Errorf("the panel shares the master's session")
	}
}

// A master's output is rate-limited as journald limits a unit's: a script
// that writes 5,000 lines at once leaves at most 1,000 of them in a second
// of the log, and a line that says how many were dropped.
func TestSupervisedOutputRateLimit(t *testing.T) {
	l, opt := setup(t)
	s := newSession(t, opt)
	spec, _ := provision(t, s, "rate", procmgr.SpecInput{})
	ctx := ctxFor(t)
	mark := fmt.Sprintf("flood-%d", time.Now().UnixNano())
	out := runScript(t, l, spec.ID, "flood.php", `<?php for ($i = 0; $i < 5000; $i++) { error_log("`+mark+` $i"); } echo "done";`)
	if !strings.Contains(out, "done") {
		t.Fatalf("flood.php answered %q", out)
	}
	// The count of dropped lines is written when the next window opens.
	time.Sleep(1200 * time.Millisecond)
	runScript(t, l, spec.ID, "after.php", `<?php error_log("after the flood"); echo "ok";`)
	var kept int
	var suppressed string
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines, err := s.b.Logs(ctx, spec.ID, 10000)
		if err != nil {
			t.Fatal(err)
		}
		kept, suppressed = 0, ""
		for _, ln := range lines {
			switch {
			case strings.Contains(ln.Text, mark):
				kept++
			case strings.HasPrefix(ln.Text, "Suppressed "):
				suppressed = ln.Text
			}
		}
		if suppressed != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if kept == 0 || kept > 1000 {
		t.Errorf("%d of 5,000 flood lines kept, want between 1 and 1,000", kept)
	}
	if suppressed == "" {
		t.Fatalf("no 'Suppressed N lines' line after the flood (%d kept)", kept)
	}
	var n int
	if _, err := fmt.Sscanf(suppressed, "Suppressed %d lines", &n); err != nil || n < 5000-kept-50 {
		t.Errorf("%q: want about %d suppressed", suppressed, 5000-kept)
	}
}

// What a tenant's code leaves outside its tree goes with the instance, so
// that the next tenant given its uid finds nothing: a setsid child (no
// cgroup need track it) ends at stop; files in /tmp and /dev/shm and a
// System V shared memory segment are removed with the instance.
func TestSupervisedLeftoversGoWithTheInstance(t *testing.T) {
	t.Run("WithCgroups", func(t *testing.T) { leftoversGo(t, false) })
	// Where no cgroup tracks the setsid child, the instance's uid is what
	// finds it.
	t.Run("WithoutCgroups", func(t *testing.T) { leftoversGo(t, true) })
}

func leftoversGo(t *testing.T, noCgroups bool) {
	l, opt := setup(t)
	if noCgroups {
		opt.CgroupRoot = t.TempDir()
	}
	s := newSession(t, opt)
	spec, _ := provision(t, s, "left", procmgr.SpecInput{})
	ctx := ctxFor(t)
	uid := instanceUID(t, spec.ID)
	tmpFile := "/tmp/ikt-left-" + string(spec.ID)
	shmFile := "/dev/shm/ikt-left-" + string(spec.ID)
	out := runScript(t, l, spec.ID, "leave.php", `<?php
exec("setsid sleep 1000 > /dev/null 2>&1 < /dev/null &");
exec("echo x > `+tmpFile+`; echo y > `+shmFile+`; ipcmk -M 4096 2>&1", $o, $rc);
echo "rc=$rc ", implode(" ", $o);`)
	if !strings.Contains(out, "rc=0") {
		t.Fatalf("leave.php: %q", out)
	}
	// The setsid child is there, outside the master's process group.
	var stray []int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stray = nil
		for _, p := range procmgr.UIDProcesses(uid) {
			if strings.HasPrefix(cmdline(p), "sleep 1000") {
				stray = append(stray, p)
			}
		}
		if len(stray) > 0 {
			break
		}
	}
	if len(stray) == 0 {
		t.Fatal("the setsid child never showed up")
	}
	if _, err := s.b.Stop(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if left := procmgr.UIDProcesses(uid); len(left) > 0 {
		t.Errorf("after stop, processes of the instance's uid remain: %v", left)
	}
	for _, f := range []string{tmpFile, shmFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s was not made: %v", f, err)
		}
	}
	if !ipcHasUID(uid) {
		t.Fatal("no System V segment of the instance's uid was made")
	}
	if err := s.b.Deprovision(ctx, spec.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{tmpFile, shmFile} {
		if _, err := os.Stat(f); err == nil {
			os.Remove(f)
			t.Errorf("%s outlived the instance", f)
		}
	}
	if ipcHasUID(uid) {
		t.Errorf("a System V segment of uid %d outlived the instance", uid)
	}
}

// ipcHasUID reports whether a shared memory segment of uid exists.
func ipcHasUID(uid int) bool {
	data, _ := os.ReadFile("/proc/sysvipc/shm")
	lines := strings.Split(string(data), "\n")
	if len(lines) == 0 {
		return false
	}
	cols := strings.Fields(lines[0])
	ui := -1
	for i, c := range cols {
		if c == "uid" {
			ui = i
		}
	}
	for _, line := range lines[1:] {
		if f := strings.Fields(line); ui >= 0 && len(f) > ui && f[ui] == strconv.Itoa(uid) {
			return true
		}
	}
	return false
}

// A master killed while a worker serves a request that started a process of
// its own in a new session: the worker and that process go with the master
// (as systemd ends the rest of a unit's cgroup), before the new master
// starts.
func TestCrashEndsBusyWorkers(t *testing.T) {
	t.Run("WithCgroups", func(t *testing.T) { crashEndsBusyWorkers(t, false) })
	// A host whose cgroups the supervisor cannot use (a container): the
	// master's process group and the instance's uid are all there is.
	t.Run("WithoutCgroups", func(t *testing.T) { crashEndsBusyWorkers(t, true) })
}

func crashEndsBusyWorkers(t *testing.T, noCgroups bool) {
	l, opt := setup(t)
	if noCgroups {
		opt.CgroupRoot = t.TempDir()
	}
	s := newSession(t, opt)
	spec, st := provision(t, s, "busy", procmgr.SpecInput{})
	ctx := ctxFor(t)
	script := filepath.Join(l.PublicDir(spec.ID), "busy.php")
	if err := os.WriteFile(script, []byte(`<?php exec("setsid sleep 300 > /dev/null 2>&1 < /dev/null &"); sleep(20); echo "done";`), 0o644); err != nil {
		t.Fatal(err)
	}
	go fcgi.Do(ctx, l.SocketPath(spec.ID), fcgi.Request{Params: map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
		"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/busy.php", "REQUEST_URI": "/busy.php",
	}})
	uid := instanceUID(t, spec.ID)
	var workers, escaped []int
	for deadline := time.Now().Add(3 * time.Second); (len(workers) == 0 || len(escaped) == 0) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		workers, escaped = children(st.MainPID), nil
		for _, p := range procmgr.UIDProcesses(uid) {
			if strings.HasPrefix(cmdline(p), "sleep 300") {
				escaped = append(escaped, p)
			}
		}
	}
	if len(workers) == 0 || len(escaped) == 0 || st.MainPID <= 1 {
		t.Fatalf("no busy worker (%v) and its own process (%v) under master %d", workers, escaped, st.MainPID)
	}
	workers = append(workers, escaped...)
	if err := syscall.Kill(st.MainPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := waitStatus(t, s.b, spec.ID, 5*time.Second, func(x procmgr.Status) bool {
		return x.State == procmgr.StateRunning && x.MainPID != 0 && x.MainPID != st.MainPID
	})
	if next.MainPID == st.MainPID || next.State != procmgr.StateRunning {
		t.Fatalf("not restarted: %+v", next)
	}
	for _, w := range workers {
		if alive(w) {
			t.Errorf("%d (%s) of the killed master still runs after the restart", w, cmdline(w))
			syscall.Kill(w, syscall.SIGKILL)
		}
	}
	if err := procmgr.Ping(ctx, l.SocketPath(spec.ID)); err != nil {
		t.Errorf("the new master does not answer: %v", err)
	}
}

// A supervised instance's PHP sees in /proc only its own processes (the
// sandbox's hidepid=invisible), none of the host's /proc files beyond
// them (subset=pid), and cannot name another instance's master, the panel
// or root's processes; its own master and workers stay visible to it.
// systemd's units get the same from ProtectProc= and ProcSubset=.
func TestSupervisedMasterSeesOnlyItsOwnProcesses(t *testing.T) {
	l, opt := setup(t)
	s := newSession(t, opt)
	spec, st := provision(t, s, "procs", procmgr.SpecInput{PM: "static", MaxChildren: "2"})
	_, other := provision(t, s, "other", procmgr.SpecInput{})
	out := runScript(t, l, spec.ID, "procs.php", `<?php
// open_basedir keeps PHP's own functions out of /proc: ask ls, as
// tenant code would.
exec('ls -1 /proc', $entries);
$pids = array_map('intval', array_values(array_filter($entries, 'ctype_digit')));
exec('test -e /proc/meminfo', $o, $meminfo);
exec('test -d /proc/sys/kernel', $o, $sys);
echo json_encode(['pids' => $pids, 'meminfo' => $meminfo === 0, 'sys' => $sys === 0, 'self' => getmypid()]);`)
	var seen struct {
		PIDs    []int `json:"pids"`
		Meminfo bool  `json:"meminfo"`
		Sys     bool  `json:"sys"`
		Self    int   `json:"self"`
	}
	if err := json.Unmarshal([]byte(out), &seen); err != nil {
		t.Fatalf("procs.php answered %q: %v", out, err)
	}
	uid := instanceUID(t, spec.ID)
	if !slices.Contains(seen.PIDs, st.MainPID) || !slices.Contains(seen.PIDs, seen.Self) {
		t.Errorf("the instance's own master %d and worker %d are not in its /proc: %v", st.MainPID, seen.Self, seen.PIDs)
	}
	for _, pid := range seen.PIDs {
		if r, err := uidOf(pid); err == nil && r != uid {
			t.Errorf("the instance sees pid %d of uid %d (%s) in /proc", pid, r, cmdline(pid))
		}
	}
	for what, pid := range map[string]int{"the panel": os.Getpid(), "the other instance's master": other.MainPID, "init": 1} {
		if slices.Contains(seen.PIDs, pid) {
			t.Errorf("the instance sees %s (pid %d) in /proc", what, pid)
		}
	}
	if seen.Meminfo || seen.Sys {
		t.Errorf("the instance sees the host's /proc files (meminfo %v, sys %v), want only the process part", seen.Meminfo, seen.Sys)
	}
	// The host's /proc is untouched: the panel still sees the masters.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", st.MainPID)); err != nil {
		t.Errorf("the panel lost sight of the master: %v", err)
	}
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Errorf("the host's /proc changed: %v", err)
	}
}

// uidOf is the real uid of pid, as the host sees it.
func uidOf(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return -1, fmt.Errorf("no Uid line")
}
