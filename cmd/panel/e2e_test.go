package main

// End-to-end tests: the real panel binary, `panel serve` as a real daemon on
// the real systemd (booted privately by scripts/with-systemd.sh), and every
// verb run as a person would run it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
)

var panelBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "panel-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	panelBin = filepath.Join(dir, "panel")
	out, err := exec.Command("go", "build", "-o", panelBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build panel: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one `panel serve` process with its own layout, socket and
// database.
type daemon struct {
	t       *testing.T
	backend string
	layout  procmgr.Layout
	socket  string
	db      string
	listen  string   // the HTTP address
	extra   []string // more panel serve flags
	cmd     *exec.Cmd
	log     *bytes.Buffer
	exited  chan struct{}
}

func requireSystemd(t *testing.T) {
	t.Helper()
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("end-to-end tests need a running systemd as PID 1 (found %q): run them with scripts/with-systemd.sh or make test", strings.TrimSpace(string(comm)))
	}
	procmgrtest.RequirePHPFPM(t)
}

// backends are the process backends every end-to-end test runs against.
var backends = []string{"systemd", "supervise"}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

func newDaemon(t *testing.T, backend string) *daemon {
	t.Helper()
	return newDaemonOn(t, backend, "127.0.0.1:0")
}

// newDaemonOn is newDaemon with the web panel on listen, and extra flags
// for panel serve.
func newDaemonOn(t *testing.T, backend, listen string, extra ...string) *daemon {
	t.Helper()
	if backend == "systemd" {
		requireSystemd(t)
	}
	procmgrtest.RequirePHPFPM(t)
	l := procmgrtest.NewLayout(t)
	base := filepath.Dir(l.InstancesRoot)
	d := &daemon{t: t, backend: backend, layout: l, socket: filepath.Join(base, "panel.sock"), db: "sqlite://" + filepath.Join(base, "panel.db"), listen: listen, extra: extra}
	d.start()
	t.Cleanup(func() {
		// Remove every instance this daemon knows, then stop it.
		var vs []instances.View
		if out, err := d.panel("list", "--json"); err == nil && json.Unmarshal([]byte(out), &vs) == nil {
			for _, v := range vs {
				d.panel("remove", v.ID, "--purge")
			}
		}
		d.stop(syscall.SIGTERM)
	})
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	d.cmd = exec.Command(panelBin, "serve", "--db", d.db, "--listen", d.listen, "--socket", d.socket,
		"--instances-root", d.layout.InstancesRoot, "--config-root", d.layout.ConfigRoot,
		"--runtime-root", d.layout.RuntimeRoot, "--web-user", d.layout.WebUser, "--unit-prefix", d.layout.UnitPrefix,
		"--backend", d.backend, "--force-supervise")
	if !slices.Contains(d.extra, "--http-listen") {
		// No nginx unless the test asks for one: it would take port 80.
		d.cmd.Args = append(d.cmd.Args, "--http-listen", "none")
	}
	d.cmd.Args = append(d.cmd.Args, d.extra...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			if _, err := d.panel("list"); err == nil {
				return
			}
		}
		select {
		case <-d.exited:
			d.t.Fatalf("panel serve exited:\n%s", d.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.t.Fatalf("panel serve did not answer within 15s:\n%s", d.log)
}

func (d *daemon) stop(sig syscall.Signal) {
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// panel runs one CLI verb against the daemon and returns its stdout; err
// carries stderr and the exit code.
func (d *daemon) panel(args ...string) (string, error) {
	cmd := exec.Command(panelBin, args...)
	cmd.Env = append(os.Environ(), "IKABUD_SOCKET="+d.socket)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("panel %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (d *daemon) must(args ...string) string {
	d.t.Helper()
	out, err := d.panel(args...)
	if err != nil {
		d.t.Fatalf("%v\ndaemon log:\n%s", err, d.log)
	}
	return out
}

var pidRe = regexp.MustCompile(`(?m)^PID: (\d+)$`)
var restartsRe = regexp.MustCompile(`(?m)^Restarts: (\d+)$`)

func field(t *testing.T, re *regexp.Regexp, out string) int {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output lacks %s:\n%s", re, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func uidOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(data)
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func TestTourCreateKillStopStartSetRemove(t *testing.T) {
	forEachBackend(t, testTour)
}

func testTour(t *testing.T, backend string) {
	d := newDaemon(t, backend)
	id := string(procmgrtest.NewID("wp"))
	out := d.must("create", id, "--cms", "wordpress", "--domain", id+".example.test")
	pid := field(t, pidRe, out)
	if pid <= 1 {
		t.Fatalf("create printed PID %d", pid)
	}
	u, err := user.Lookup(procmgr.InstanceID(id).UserName())
	if err != nil {
		t.Fatalf("instance user: %v", err)
	}
	if got := strconv.Itoa(uidOf(t, pid)); got != u.Uid {
		t.Errorf("PID %d runs as uid %s, want %s (%s)", pid, got, u.Uid, u.Username)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "php-fpm: master process") {
		t.Errorf("PID %d is %q", pid, cmdline)
	}
	sock := d.layout.SocketPath(procmgr.InstanceID(id))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := procmgr.Ping(ctx, sock); err != nil {
		t.Fatalf("FastCGI ping: %v", err)
	}

	// kill -9: running again with a new PID and one more restart. How fast
	// is a figure of make bench (milliseconds); the bound here only keeps a
	// loaded machine from failing the test.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st = d.must("status", id)
		if strings.Contains(st, "State: running") && field(t, pidRe, st) != pid && field(t, pidRe, st) != 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(st, "State: running") || field(t, pidRe, st) == pid || field(t, restartsRe, st) != 1 {
		t.Fatalf("15s after kill -9 of %d, status:\n%s", pid, st)
	}
	if !strings.Contains(st, "Last exit: killed by signal KILL") {
		t.Errorf("status does not say how the master died:\n%s", st)
	}

	// stop removes the socket; start brings a new PID.
	out = d.must("stop", id)
	if !strings.Contains(out, "State: stopped") || field(t, pidRe, out) != 0 {
		t.Errorf("stop:\n%s", out)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("socket %s still there after stop", sock)
	}
	before := field(t, pidRe, st)
	out = d.must("start", id)
	after := field(t, pidRe, out)
	if after == 0 || after == before {
		t.Errorf("start gave PID %d (before %d)", after, before)
	}

	// set changes limits live, without a restart.
	out = d.must("set", id, "--memory-max", "300M", "--cpu-quota", "40%")
	if field(t, pidRe, out) != after {
		t.Errorf("set restarted the master: %d -> %d", after, field(t, pidRe, out))
	}
	if backend == "systemd" {
		show, err := exec.Command("systemctl", "show", "-p", "MemoryMax", "-p", "CPUQuotaPerSecUSec", d.layout.UnitName(procmgr.InstanceID(id))).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(show), "MemoryMax=314572800") || !strings.Contains(string(show), "CPUQuotaPerSecUSec=400ms") {
			t.Errorf("systemctl show after set:\n%s", show)
		}
	}
	if st := d.must("status", id); !strings.Contains(st, "Memory: ") || !strings.Contains(st, "(max 300M)") || !strings.Contains(st, "(quota 40%)") || !strings.Contains(st, "Backend: "+backend) {
		t.Errorf("status after set:\n%s", st)
	}

	// health, logs, list --json, audit.
	if out := d.must("health", id); !strings.Contains(out, "Health: healthy") {
		t.Errorf("health:\n%s", out)
	}
	var h procmgr.Health
	if err := json.Unmarshal([]byte(d.must("health", id, "--json")), &h); err != nil || !h.Healthy || h.Pool == nil || h.Pool.Pool != id {
		t.Errorf("health --json: %+v %v", h, err)
	}
	if out := d.must("logs", id, "-n", "200"); !strings.Contains(out, "ready to handle connections") {
		t.Errorf("logs lack the start line:\n%s", out)
	}
	var vs []instances.View
	if err := json.Unmarshal([]byte(d.must("list", "--json")), &vs); err != nil || len(vs) != 1 || vs[0].Status.MainPID != after {
		t.Errorf("list --json: %+v %v", vs, err)
	}
	audit := d.must("audit", id)
	for _, action := range []string{"create", "stop", "start", "set"} {
		if !regexp.MustCompile(`root\s+` + action + `\s+` + id + `\s+ok`).MatchString(audit) {
			t.Errorf("audit lacks %s:\n%s", action, audit)
		}
	}

	// remove leaves no service, config, runtime dir or user.
	d.must("remove", id, "--purge")
	if _, err := user.Lookup(procmgr.InstanceID(id).UserName()); err == nil {
		t.Errorf("user still exists after remove")
	}
	for _, p := range []string{d.layout.ConfigDir(procmgr.InstanceID(id)), d.layout.RuntimeDir(procmgr.InstanceID(id)), d.layout.InstanceDir(procmgr.InstanceID(id))} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists after remove --purge", p)
		}
	}
	if backend == "systemd" {
		if out, _ := exec.Command("systemctl", "is-active", d.layout.UnitName(procmgr.InstanceID(id))).Output(); strings.TrimSpace(string(out)) == "active" {
			t.Errorf("unit still active after remove")
		}
	}
	if err := syscall.Kill(after, 0); err == nil {
		if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", after)); strings.Contains(string(cl), "php-fpm") {
			t.Errorf("master %d still running after remove", after)
		}
	}
	if _, err := d.panel("status", id); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("status after remove: %v", err)
	}
}

func TestHostileInputRefusedAndNothingCreated(t *testing.T) {
	d := newDaemon(t, "systemd")
	cases := [][]string{
		{"create", "../etc"}, {"create", "a/b"}, {"create", "wp\nx"}, {"create", "wp\rx"}, {"create", `wp"x`},
		{"create", "%h"}, {"create", "$VAR"}, {"create", `wp\`}, {"create", "Wp"}, {"create", "wp-"},
		{"create", "ok1", "--memory-max", "99999999999999999999"}, {"create", "ok2", "--max-children", "-1"},
		{"create", "ok3", "--env", "A=x\nphp_admin_value[open_basedir]=/"}, {"create", "ok4", "--env", "A=%h"},
		{"create", "ok5", "--env", "A=$HOME"}, {"create", "ok6", "--env", `A=x\`}, {"create", "ok7", "--env", `A="x"`},
		{"create", "ok8", "--cpu-quota", "40%\nCPUQuota=100%"}, {"create", "ok9", "--php", "8.2;"}, {"create", "ok10", "--pm", "static\n"},
		{"create", "ok11", "--tasks-max", "1e9"}, {"create", "ok12", "--upload-max", "1T"}, {"create", "ok13", "--php", "7.0"},
	}
	for _, args := range cases {
		_, err := d.panel(args...)
		if err == nil {
			t.Errorf("accepted: %q", args)
			continue
		}
		if !strings.Contains(err.Error(), "invalid input") {
			t.Errorf("%q: error does not name the field and rule: %v", args, err)
		}
	}
	// Nothing reached the disk: no instance dirs, no configs, no users.
	for _, dir := range []string{d.layout.InstancesRoot, filepath.Join(d.layout.ConfigRoot, "instances")} {
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Errorf("%s has %d entries after refused input", dir, len(entries))
		}
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	for _, id := range []string{"ok1", "ok2", "ok3", "ok4", "ok5"} {
		if strings.Contains(string(passwd), procmgr.UserPrefix+id+":") {
			t.Errorf("user for refused %s exists", id)
		}
	}
	if out := d.must("list"); !strings.Contains(out, "(no instances)") {
		t.Errorf("list after refused creates:\n%s", out)
	}
}

func TestDaemonKilledInstancesKeepServing(t *testing.T) {
	forEachBackend(t, testDaemonKilled)
}

// The panel dies (kill -9); its instances keep serving; the panel that comes
// back shows them with the same PIDs (the supervisor adopts its masters
// rather than starting second copies).
func testDaemonKilled(t *testing.T, backend string) {
	d := newDaemon(t, backend)
	a, b := string(procmgrtest.NewID("a")), string(procmgrtest.NewID("b"))
	pa := field(t, pidRe, d.must("create", a))
	pb := field(t, pidRe, d.must("create", b))
	d.must("stop", b)

	d.stop(syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := procmgr.Ping(ctx, d.layout.SocketPath(procmgr.InstanceID(a))); err != nil {
		t.Fatalf("instance stopped serving when the panel died: %v", err)
	}
	if _, err := d.panel("status", a); err == nil || !strings.Contains(err.Error(), "daemon not running") {
		t.Errorf("status with the daemon down: %v, want a 'daemon not running' error", err)
	}

	d.start()
	sa := d.must("status", a)
	if field(t, pidRe, sa) != pa || !strings.Contains(sa, "State: running") {
		t.Errorf("after the panel restarted, %s is:\n%s\nwant running with PID %d", a, sa, pa)
	}
	sb := d.must("status", b)
	if !strings.Contains(sb, "State: stopped (desired: stopped)") {
		t.Errorf("stopped instance after panel restart:\n%s", sb)
	}
	_ = pb
	if n := countMasters(t, d.layout.FPMConfigPath(procmgr.InstanceID(a))); n != 1 {
		t.Errorf("%d php-fpm masters for %s after the panel came back, want 1", n, a)
	}
}

// countMasters counts the php-fpm masters running a config.
func countMasters(t *testing.T, config string) int {
	t.Helper()
	return len(procmgrtest.MasterPIDs(config))
}

// A panel killed between recording a create and finishing it: the
// reconciler finishes the create when the panel comes back.
func TestReconcilerFinishesInterruptedCreate(t *testing.T) {
	d := newDaemon(t, "systemd")
	d.stop(syscall.SIGTERM)
	id := procmgrtest.NewID("half")
	spec := procmgrtest.MustSpec(t, id, procmgr.SpecInput{})
	specJSON, _ := procmgr.MarshalSpec(spec)
	ctx := context.Background()
	db, err := store.Open(ctx, d.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateInstance(ctx, &store.Instance{ID: string(id), CMS: "php", PHPVersion: "8.2", Spec: string(specJSON),
		DesiredState: "running", Phase: "provisioning", Generation: 1}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	d.start()
	var st string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, _ = d.panel("status", string(id))
		if strings.Contains(st, "State: running") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(st, "State: running") || field(t, pidRe, st) == 0 {
		t.Fatalf("interrupted create not finished:\n%s\n%s", st, d.log)
	}
	// The audit record is written just after the status is published.
	var audit string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if audit = d.must("audit", string(id)); strings.Contains(audit, "finish-create") {
			break
		}
	}
	if !strings.Contains(audit, "finish-create") {
		t.Errorf("audit lacks the reconciler's finish-create:\n%s", audit)
	}
}

func TestDaemonNotRunningMessage(t *testing.T) {
	cmd := exec.Command(panelBin, "status", "x")
	cmd.Env = append(os.Environ(), "IKABUD_SOCKET=/run/nonexistent-panel.sock")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	if !strings.Contains(string(out), "daemon not running") {
		t.Errorf("message: %s", out)
	}
}
