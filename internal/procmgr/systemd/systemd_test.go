package systemd_test

import (
	"context"
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

func TestConformance(t *testing.T) {
	procmgrtest.Run(t, func(t *testing.T, l procmgr.Layout) procmgr.Backend { return newBackend(t, l) })
}

// systemctl show is the view a person checks; it must agree with what
// SetLimits read back over D-Bus.
func TestSetLimitsVisibleToSystemctl(t *testing.T) {
	procmgrtest.RequirePHPFPM(t)
	l := procmgrtest.NewLayout(t)
	b := newBackend(t, l)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := procmgrtest.NewID("show")
	if _, err := b.Provision(ctx, procmgrtest.MustSpec(t, id, procmgr.SpecInput{})); err != nil {
		t.Fatal(err)
	}
	defer b.Deprovision(context.Background(), id, true)
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

// The template unit is installed once; creating instances must not change it
// (a daemon-reload per create costs 90-245 ms).
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := procmgrtest.NewID("nr")
	if _, err := b.Provision(ctx, procmgrtest.MustSpec(t, id, procmgr.SpecInput{})); err != nil {
		t.Fatal(err)
	}
	defer b.Deprovision(context.Background(), id, true)
	after, _ := os.Stat(tpl)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("template unit rewritten by create")
	}
	out, _ := exec.Command("systemctl", "show", "-p", "NeedDaemonReload", l.UnitName(id)).Output()
	if strings.TrimSpace(string(out)) != "NeedDaemonReload=no" {
		t.Errorf("unit needs a daemon-reload: %s", out)
	}
}
