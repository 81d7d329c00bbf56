package systemd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/procmgr/systemd"
)

// requireSystemd fails unless the test runs under a booted systemd (make
// test boots a private one and runs the tests inside it).
func requireSystemd(t testing.TB) {
	t.Helper()
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("these tests need a running systemd as PID 1 (found %q): run them with scripts/with-systemd.sh or make test", strings.TrimSpace(string(comm)))
	}
}

func newBackend(t *testing.T, l procmgr.Layout) *systemd.Backend {
	t.Helper()
	requireSystemd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := systemd.New(ctx, systemd.Options{Layout: l})
	if err != nil {
		t.Fatalf("systemd backend: %v", err)
	}
	return b
}

// provisionOne makes a backend on a fresh layout and one instance running
// on it, for a test that needs nothing more; both go after the test.
func provisionOne(t *testing.T, suffix string) (procmgr.Layout, *systemd.Backend, procmgr.InstanceID, context.Context) {
	t.Helper()
	procmgrtest.RequirePHPFPM(t)
	l := procmgrtest.NewLayout(t)
	b := newBackend(t, l)
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	id := procmgrtest.NewID(suffix)
	if _, err := b.Provision(ctx, procmgrtest.MustSpec(t, id, procmgr.SpecInput{})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Deprovision(context.Background(), id, true) })
	return l, b, id, ctx
}

func TestConformance(t *testing.T) {
	procmgrtest.Run(t, func(t *testing.T, l procmgr.Layout) procmgr.Backend { return newBackend(t, l) })
}

// systemctl show is the view a person checks; it must agree with what
// SetLimits read back over D-Bus.
func TestSetLimitsVisibleToSystemctl(t *testing.T) {
	l, b, id, ctx := provisionOne(t, "show")
	if _, err := b.SetLimits(ctx, id, procmgr.Limits{MemoryMax: 300 << 20, CPUQuota: 40, TasksMax: 77}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemctl", "show", "-p", "MemoryMax", "-p", "CPUQuotaPerSecUSec", "-p", "TasksMax", l.UnitName(id)).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MemoryMax=314572800", "CPUQuotaPerSecUSec=400ms", "TasksMax=77"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("systemctl show:\n%s\nlacks %s", out, want)
		}
	}
}

// The template unit is installed once; creating instances must not change
// it, nor make systemd reload (a daemon-reload per create costs 90-245 ms).
// Reloads are counted across creates from systemd's own record of them
// (its journal), which counts every reload: make test runs this package in
// a private systemd of its own, where no other test's panel reloads it.
func TestNoDaemonReloadPerCreate(t *testing.T) {
	procmgrtest.RequirePHPFPM(t)
	l := procmgrtest.NewLayout(t)
	b := newBackend(t, l)
	defer b.Close()
	tpl := l.UnitDir + "/" + l.UnitTemplateName()
	before, err := os.Stat(tpl)
	if err != nil {
		t.Fatal(err)
	}
	reloads, stop := countReloads(t)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// A reload the test causes itself, to show the counter hears them.
	if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
		t.Fatalf("systemctl daemon-reload: %v %s", err, out)
	}
	waitCount(t, reloads, 1, "the test's own daemon-reload")
	for i := range 3 {
		id := procmgrtest.NewID(fmt.Sprintf("nr%d", i))
		if _, err := b.Provision(ctx, procmgrtest.MustSpec(t, id, procmgr.SpecInput{})); err != nil {
			t.Fatal(err)
		}
		defer b.Deprovision(context.Background(), id, true)
		if _, err := b.SetLimits(ctx, id, procmgr.Limits{MemoryMax: 200 << 20, CPUQuota: 50, TasksMax: 40}); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command("systemctl", "show", "-p", "NeedDaemonReload", l.UnitName(id)).Output()
		if strings.TrimSpace(string(out)) != "NeedDaemonReload=no" {
			t.Errorf("unit needs a daemon-reload: %s", out)
		}
	}
	// Any reload the creates caused has been logged by now (a round trip
	// to systemd orders after it; journald takes a moment more).
	exec.Command("systemctl", "show", "-p", "Version").Run()
	time.Sleep(500 * time.Millisecond)
	if n := reloads(); n != 1 {
		t.Errorf("systemd reloaded %d times across 3 creates and limit changes, want none (besides the test's own)", n-1)
	}
	after, _ := os.Stat(tpl)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("template unit rewritten by create")
	}
}

// countReloads counts systemd's reloads from now on, from its own record
// of them: the "Reloading." line PID 1 logs to the journal at each one.
func countReloads(t *testing.T) (func() int64, func()) {
	t.Helper()
	since := fmt.Sprintf("@%.6f", float64(time.Now().UnixMicro())/1e6)
	return func() int64 {
		out, err := exec.Command("journalctl", "-o", "cat", "_PID=1", "--since", since, "--no-pager").Output()
		if err != nil {
			t.Fatalf("journalctl: %v", err)
		}
		var n int64
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "Reloading") {
				n++
			}
		}
		return n
	}, func() {}
}

func waitCount(t *testing.T, n func() int64, want int64, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); n() < want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d reloads logged, want %d", what, n(), want)
		}
	}
}
