package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
)

// printStatus writes the human status of one instance, one "Key: value"
// line each, like the tool the panel replaces (scripts grep "PID: ").
func printStatus(w io.Writer, v instances.View) {
	st := v.Status
	fmt.Fprintf(w, "Instance: %s\n", v.ID)
	fmt.Fprintf(w, "State: %s (desired: %s)\n", st.State, v.Desired)
	fmt.Fprintf(w, "PID: %d\n", st.MainPID)
	fmt.Fprintf(w, "Restarts: %d\n", st.Restarts)
	if st.LastExit != nil {
		fmt.Fprintf(w, "Last exit: %s\n", st.LastExit)
	}
	if !st.Since.IsZero() {
		fmt.Fprintf(w, "Since: %s\n", st.Since.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "CMS: %s, PHP %s\n", v.CMS, v.PHP)
	fmt.Fprintf(w, "User: %s\n", v.User)
	fmt.Fprintf(w, "Socket: %s\n", v.Socket)
	if len(v.Spec.Domains) > 0 {
		fmt.Fprintf(w, "Domains: %s\n", strings.Join(v.Spec.Domains, " "))
	} else {
		fmt.Fprintf(w, "Domains: none (no site is published)\n")
	}
	if st.Running() {
		fmt.Fprintf(w, "Memory: %s (max %s)\n", humanBytes(st.MemoryBytes), st.Limits.MemoryMax)
		fmt.Fprintf(w, "CPU: %s used (quota %s)\n", st.CPUUsage.Round(time.Millisecond), st.Limits.CPUQuota)
		fmt.Fprintf(w, "Tasks: %d (max %d)\n", st.Tasks, st.Limits.TasksMax)
	} else {
		// The last run's figures are not the present's.
		fmt.Fprintf(w, "Memory: - (max %s)\n", st.Limits.MemoryMax)
		fmt.Fprintf(w, "CPU: - (quota %s)\n", st.Limits.CPUQuota)
		fmt.Fprintf(w, "Tasks: - (max %d)\n", st.Limits.TasksMax)
	}
	fmt.Fprintf(w, "Pool: pm=%s max_children=%s\n", v.Spec.PM, v.Spec.MaxChildren)
	fmt.Fprintf(w, "Backend: %s\n", st.Backend)
	for _, n := range st.Notes {
		fmt.Fprintf(w, "Note: %s\n", escapeControls(n))
	}
	if h := v.Health; h != nil {
		if h.Healthy {
			fmt.Fprintf(w, "Health watch: healthy since %s\n", h.Since.Local().Format(time.DateTime))
		} else {
			fmt.Fprintf(w, "Health watch: UNHEALTHY since %s: %s (%s)\n", h.Since.Local().Format(time.DateTime), escapeControls(h.Reason), h.Action)
		}
	}
	if v.LastError != "" {
		fmt.Fprintf(w, "Last error: %s\n", escapeControls(v.LastError))
	}
}

func humanBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func printList(w io.Writer, vs []instances.View) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPID\tDESIRED\tCMS\tPHP\tMEMORY\tRESTARTS")
	for _, v := range vs {
		mem := "-"
		if v.Status.Running() {
			mem = humanBytes(v.Status.MemoryBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\n", v.ID, v.Status.State, v.Status.MainPID, v.Desired, v.CMS, v.PHP, mem, v.Status.Restarts)
	}
	tw.Flush()
	if len(vs) == 0 {
		fmt.Fprintln(w, "(no instances)")
	}
}

func printHealth(w io.Writer, id string, h procmgr.Health) {
	if h.Healthy {
		fmt.Fprintf(w, "Health: healthy (ping %s)\n", h.PingLatency.Round(time.Microsecond))
	} else {
		fmt.Fprintf(w, "Health: unhealthy: %s\n", escapeControls(h.Reason))
	}
	if p := h.HTTP; p != nil {
		if p.OK {
			fmt.Fprintf(w, "Through nginx: ok, %d in %s (Host %s, %s)\n", p.Status, p.Latency.Round(time.Microsecond), p.Host, p.URL)
		} else {
			fmt.Fprintf(w, "Through nginx: failed: %s (Host %s, %s)\n", escapeControls(p.Reason), p.Host, p.URL)
		}
	}
	if p := h.Pool; p != nil {
		// These strings come from whatever answers on the instance's
		// socket, which the tenant can replace.
		fmt.Fprintf(w, "Pool: %s (%s)\n", escapeControls(p.Pool), escapeControls(p.ProcessManager))
		fmt.Fprintf(w, "Processes: %d active, %d idle, %d total\n", p.ActiveProcesses, p.IdleProcesses, p.TotalProcesses)
		fmt.Fprintf(w, "Listen queue: %d (max %d)\n", p.ListenQueue, p.MaxListenQueue)
		fmt.Fprintf(w, "Max children reached: %d\n", p.MaxChildrenReached)
		fmt.Fprintf(w, "Accepted connections: %d\n", p.AcceptedConn)
	}
}

func printAudit(w io.Writer, evs []instances.AuditEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tWHO\tACTION\tINSTANCE\tRESULT\tDETAIL")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format(time.DateTime), escapeControls(e.Actor), e.Action,
			e.InstanceID, e.Result, escapeControls(e.Detail))
	}
	tw.Flush()
}

// panelHealth is /healthz.
type panelHealth struct {
	OK        bool                      `json:"ok"`
	Backend   string                    `json:"backend"`
	Version   string                    `json:"version"`
	WebServer instances.WebServerStatus `json:"web_server"`
	Warnings  []string                  `json:"warnings"`
}

func printPanelHealth(w io.Writer, h panelHealth) {
	fmt.Fprintf(w, "Panel: running, version %s\n", h.Version)
	fmt.Fprintf(w, "Backend: %s\n", h.Backend)
	switch {
	case !h.WebServer.Managed:
		fmt.Fprintf(w, "Web server: not managed by the panel (--http-listen none)\n")
	case h.WebServer.Up:
		fmt.Fprintf(w, "Web server: up (%s)\n", h.WebServer.Detail)
	default:
		fmt.Fprintf(w, "Web server: DOWN (%s)\n", h.WebServer.Detail)
	}
	for _, warn := range h.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", escapeControls(warn))
	}
}
