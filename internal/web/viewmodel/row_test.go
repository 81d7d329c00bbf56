package viewmodel_test

import (
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

func view(state procmgr.State, pid int) instances.View {
	owner := uint(7)
	return instances.View{ID: "site", OwnerID: &owner, CMS: "wordpress", PHP: "8.2", Phase: instances.PhaseReady, Desired: "running",
		Status: procmgr.Status{State: state, MainPID: pid, Restarts: 2, MemoryBytes: 8_700_000, Tasks: 3,
			Since:  time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
			Limits: procmgr.Limits{MemoryMax: 512 << 20, CPUQuota: 50, TasksMax: 64}}}
}

func TestNewRow(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 3, 30, 0, time.UTC)
	x := viewmodel.Extra{CPUPercent: 25, Health: viewmodel.Health{Known: true, Healthy: true, Latency: 1500 * time.Microsecond}}
	owner := auth.Principal{UserID: 7, Name: "alice", Role: auth.RoleCustomer}
	support := auth.Principal{UserID: 8, Name: "sam", Role: auth.RoleSupport}
	admin := auth.Principal{UserID: 1, Name: "ann", Role: auth.RoleAdmin}

	v := view(procmgr.StateRunning, 4242)
	r := viewmodel.NewRow(v, x, viewmodel.PermsFor(owner, v), now)
	if r.State != "running" || r.Tone != viewmodel.ToneOK || r.PIDText != "4242" || r.Uptime != "3 min" {
		t.Errorf("running row: %+v", r)
	}
	if r.MemText != "8.3 MiB / 512 MiB" || r.MemPct != 1 || r.CPUText != "25.0% / 50%" || r.CPUPct != 50 || r.Tasks != "3 / 64" {
		t.Errorf("figures: mem %q %d cpu %q %d tasks %q", r.MemText, r.MemPct, r.CPUText, r.CPUPct, r.Tasks)
	}
	if r.HealthWord != "healthy" || r.HealthTone != viewmodel.ToneOK {
		t.Errorf("health %q %q", r.HealthWord, r.HealthTone)
	}
	if r.CanStart || !r.CanStop || !r.CanRestart || !r.CanReload || r.CanKill || r.CanManage {
		t.Errorf("owner's buttons on a running instance: %+v", r)
	}
	if r := viewmodel.NewRow(v, x, viewmodel.PermsFor(support, v), now); r.CanStop || r.CanRestart || r.CanReload || r.CanKill || r.CanManage {
		t.Errorf("support may press something: %+v", r)
	}
	if r := viewmodel.NewRow(v, x, viewmodel.PermsFor(admin, v), now); !r.CanKill || !r.CanManage {
		t.Errorf("admin's buttons: %+v", r)
	}

	// Stopped: no PID, no usage from the last run, start offered.
	s := view(procmgr.StateStopped, 4242)
	r = viewmodel.NewRow(s, x, viewmodel.PermsFor(owner, s), now)
	if r.PIDText != "-" || r.PID != 0 || r.MemText != "- / 512 MiB" || r.MemPct != -1 || r.CPUText != "- / 50%" || r.HealthWord != "-" {
		t.Errorf("stopped row shows the last run: %+v", r)
	}
	if !r.CanStart || r.CanStop || r.Tone != viewmodel.ToneIdle {
		t.Errorf("stopped row: %+v", r)
	}
	for state, tone := range map[procmgr.State]viewmodel.Tone{procmgr.StateFailed: viewmodel.ToneBad, procmgr.StateCrashLooping: viewmodel.ToneBad,
		procmgr.StateStarting: viewmodel.ToneBusy, procmgr.StateReloading: viewmodel.ToneBusy} {
		if r := viewmodel.NewRow(view(state, 0), x, viewmodel.Perms{}, now); r.Tone != tone || r.State != string(state) {
			t.Errorf("%s: tone %s word %s", state, r.Tone, r.State)
		}
	}
	p := view(procmgr.StateProvisioning, 0)
	p.Phase = instances.PhaseProvisioning
	if r := viewmodel.NewRow(p, x, viewmodel.PermsFor(admin, p), now); r.State != "provisioning" || r.Tone != viewmodel.ToneBusy || r.CanStart || r.CanStop || r.CanKill {
		t.Errorf("provisioning row: %+v", r)
	}
}

func TestHumanBytesAndRelative(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 512 << 20: "512 MiB", 3 << 30: "3 GiB"} {
		if got := viewmodel.HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{-time.Second: "0 s", 45 * time.Second: "45 s", 3 * time.Minute: "3 min",
		125 * time.Minute: "2 h 5 min", 99 * time.Hour: "4 d 3 h"} {
		if got := viewmodel.Relative(d); got != want {
			t.Errorf("Relative(%s) = %q, want %q", d, got, want)
		}
	}
}
