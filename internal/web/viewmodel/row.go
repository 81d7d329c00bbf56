// Package viewmodel turns the instances service's views into the shapes the
// screen shows: labels, tones, "8.3 MiB / 512 MiB", which buttons a viewer
// gets. It is the only code that sees both the domain's types and the
// templates' (and the live socket's) models; templates never re-derive a
// role rule or format a number themselves.
package viewmodel

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
)

// Tone is the colour class of a state: every state word comes with one, so
// colour is never the only signal.
type Tone string

// The tones, as CSS classes (state-ok, state-busy, ...).
const (
	ToneOK   Tone = "ok"   // running
	ToneBusy Tone = "busy" // provisioning, starting, reloading, stopping
	ToneIdle Tone = "idle" // stopped
	ToneBad  Tone = "bad"  // failed, crash-looping, absent
)

// Health is the last probe of an instance's pool, as the live tracker holds it.
type Health struct {
	Known   bool
	Healthy bool
	Reason  string
	Latency time.Duration
	At      time.Time
}

// Extra is what the live tracker knows beside the service's view: the last
// health probe and the CPU rate between the last two usage samples.
type Extra struct {
	Health Health
	// CPUPercent is the share of one CPU used since the previous sample;
	// negative when not known yet.
	CPUPercent float64
}

// Perms is what a viewer may do to one instance; it is computed from the
// service's exported checks, never re-derived.
type Perms struct {
	Power  bool `json:"power"`  // start, stop, restart, reload
	Manage bool `json:"manage"` // edit, kill, remove
}

// PermsFor returns what p may do to v.
func PermsFor(p auth.Principal, v instances.View) Perms {
	return Perms{Power: instances.CanPower(p, v), Manage: instances.CanManage(p)}
}

// Row is one instance as the dashboard and the instance page's header show
// it, and as the live socket sends it. Every string is plain text: the
// templates and the browser's script escape it (textContent), never parse it.
type Row struct {
	ID       string `json:"id"`
	CMS      string `json:"cms"`
	PHP      string `json:"php"`
	State    string `json:"state"` // the word shown
	Tone     Tone   `json:"tone"`
	Desired  string `json:"desired"`
	Phase    string `json:"phase"`
	PID      int    `json:"pid"`
	PIDText  string `json:"pid_text"` // "2234", or "-" when no master runs
	Restarts int    `json:"restarts"`
	// Since is when the current state began (RFC 3339), "" when unknown;
	// the page shows it relative ("3 min") with the exact time on hover.
	Since    string `json:"since"`
	Uptime   string `json:"uptime"` // relative to render time, for pages without script
	SinceAbs string `json:"since_abs"`
	MemText  string `json:"mem_text"` // "8.3 MiB / 512 MiB"
	MemPct   int    `json:"mem_pct"`  // 0..100 of the limit, -1 when unknown
	CPUText  string `json:"cpu_text"` // "3.2% / 100%"
	CPUPct   int    `json:"cpu_pct"`  // 0..100 of the quota, -1 when unknown
	Tasks    string `json:"tasks"`    // "3 / 64"
	// HealthWord is "healthy", "unhealthy", or "-" when not probed; HealthTone
	// colours it; HealthText says why (the reason, or the ping latency).
	HealthWord string   `json:"health"`
	HealthTone Tone     `json:"health_tone"`
	HealthText string   `json:"health_text"`
	LastError  string   `json:"last_error"`
	Notes      []string `json:"notes"`
	Backend    string   `json:"backend"`
	// What the viewer may do now: a button is shown when its action is
	// both allowed and meaningful in the current state.
	CanStart   bool `json:"can_start"`
	CanStop    bool `json:"can_stop"`
	CanRestart bool `json:"can_restart"`
	CanReload  bool `json:"can_reload"`
	CanKill    bool `json:"can_kill"`
	CanManage  bool `json:"can_manage"`
}

// NewRow builds the row of v for a viewer with perms, at time now.
func NewRow(v instances.View, x Extra, perms Perms, now time.Time) Row {
	st := v.Status
	running := st.Running()
	r := Row{
		ID: v.ID, CMS: v.CMS, PHP: v.PHP, State: stateWord(v), Tone: toneOf(v),
		Desired: v.Desired, Phase: v.Phase, Restarts: st.Restarts, PIDText: "-",
		LastError: v.LastError, Notes: st.Notes, Backend: st.Backend,
		MemPct: -1, CPUPct: -1, Uptime: "-", HealthWord: "-", HealthTone: ToneIdle,
	}
	if r.Notes == nil {
		r.Notes = []string{}
	}
	if running {
		r.PID = st.MainPID
		r.PIDText = strconv.Itoa(st.MainPID)
	}
	if !st.Since.IsZero() {
		r.Since = st.Since.UTC().Format(time.RFC3339)
		r.SinceAbs = st.Since.Local().Format("2006-01-02 15:04:05 MST")
		r.Uptime = Relative(now.Sub(st.Since))
	}
	lim := st.Limits
	// A stopped instance shows no usage: the last run's figures are not now.
	if running {
		r.MemText = HumanBytes(st.MemoryBytes)
		if lim.MemoryMax > 0 {
			r.MemPct = pct(float64(st.MemoryBytes), float64(lim.MemoryMax))
		}
		if x.CPUPercent >= 0 {
			r.CPUText = strconv.FormatFloat(x.CPUPercent, 'f', 1, 64) + "%"
			if lim.CPUQuota > 0 {
				r.CPUPct = pct(x.CPUPercent, float64(lim.CPUQuota))
			}
		} else {
			r.CPUText = "…"
		}
		r.Tasks = strconv.FormatUint(st.Tasks, 10)
	} else {
		r.MemText, r.CPUText, r.Tasks = "-", "-", "-"
	}
	if lim.MemoryMax > 0 {
		r.MemText += " / " + HumanBytes(uint64(lim.MemoryMax))
	}
	if lim.CPUQuota > 0 {
		r.CPUText += " / " + strconv.Itoa(int(lim.CPUQuota)) + "%"
	}
	if lim.TasksMax > 0 {
		r.Tasks += " / " + strconv.Itoa(lim.TasksMax)
	}
	if h := x.Health; h.Known && running {
		if h.Healthy {
			r.HealthWord, r.HealthTone = "healthy", ToneOK
			r.HealthText = "ping " + h.Latency.Round(10*time.Microsecond).String()
		} else {
			r.HealthWord, r.HealthTone, r.HealthText = "unhealthy", ToneBad, h.Reason
		}
	}
	ready := v.Phase == instances.PhaseReady
	r.CanManage = perms.Manage
	r.CanStart = perms.Power && ready && !running
	r.CanStop = perms.Power && ready && st.State != procmgr.StateStopped
	r.CanRestart = perms.Power && ready
	r.CanReload = perms.Power && ready && running
	r.CanKill = perms.Manage && ready && running
	return r
}

func pct(a, b float64) int {
	if b <= 0 {
		return -1
	}
	p := int(a / b * 100)
	return min(max(p, 0), 100)
}

func stateWord(v instances.View) string {
	switch v.Phase {
	case instances.PhaseProvisioning:
		return "provisioning"
	case instances.PhaseRemoving, instances.PhasePurging:
		return "removing"
	case "removed":
		return "removed"
	}
	if v.Status.State == "" {
		return "unknown"
	}
	return string(v.Status.State)
}

func toneOf(v instances.View) Tone {
	switch v.Phase {
	case instances.PhaseProvisioning, instances.PhaseRemoving, instances.PhasePurging:
		return ToneBusy
	}
	switch v.Status.State {
	case procmgr.StateRunning:
		return ToneOK
	case procmgr.StateStopped:
		return ToneIdle
	case procmgr.StateStarting, procmgr.StateReloading, procmgr.StateStopping, procmgr.StateProvisioning:
		return ToneBusy
	}
	return ToneBad
}

// HumanBytes formats n in binary units with one decimal: "8.3 MiB".
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if v == float64(int64(v)) {
		s = strconv.FormatInt(int64(v), 10)
	}
	return s + " " + string("KMGTPE"[exp]) + "iB"
}

// Relative says how long d is in the largest whole unit: "45 s", "3 min",
// "2 h 5 min", "4 d 3 h".
func Relative(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d d %d h", int(d.Hours())/24, int(d.Hours())%24)
}
