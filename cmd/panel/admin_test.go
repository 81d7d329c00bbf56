package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
)

// TestUserAddNeedsARole: a user made without naming a role is refused, not
// made an admin; and no command takes a database password on its command line.
func TestUserAddNeedsARole(t *testing.T) {
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "p.db")
	var out, errb bytes.Buffer
	if code := run([]string{"user", "add", "dora", "--db", dsn}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--role") {
		t.Errorf("user add without --role: exit %d, %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"user", "add", "dora", "--role", "customer", "--db", dsn}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Added customer user dora") {
		t.Errorf("user add --role customer: exit %d, %q %q", code, out.String(), errb.String())
	}
	for _, args := range [][]string{
		{"migrate", "--db", "mysql://ikabud:s3cret@tcp(127.0.0.1:3306)/ikabud"},
		{"user", "add", "eve", "--role", "customer", "--db=mysql://ikabud:s3cret@tcp(127.0.0.1:3306)/ikabud"},
	} {
		errb.Reset()
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "password") {
			t.Errorf("%v: exit %d, %q; want the password refused", args[0], code, errb.String())
		}
	}
}

// TestStatusOfAStoppedInstance: no memory, CPU or task figures of the last
// run beside PID 0.
func TestStatusOfAStoppedInstance(t *testing.T) {
	v := instances.View{ID: "site", Desired: "stopped", Status: procmgr.Status{State: procmgr.StateStopped, MemoryBytes: 9 << 20,
		CPUUsage: 3 * time.Second, Tasks: 4, Limits: procmgr.Limits{MemoryMax: 512 << 20, CPUQuota: 100, TasksMax: 64}}}
	var b bytes.Buffer
	printStatus(&b, v)
	for _, want := range []string{"Memory: - (max 512M)", "CPU: - (quota 100%)", "Tasks: - (max 64)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("stopped status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printList(&b, []instances.View{v})
	if strings.Contains(b.String(), "9.0 MiB") || strings.Contains(b.String(), "9 MiB") {
		t.Errorf("list shows a stopped instance's last memory:\n%s", b.String())
	}
	v.Status.State, v.Status.MainPID = procmgr.StateRunning, 4242
	b.Reset()
	printStatus(&b, v)
	if !strings.Contains(b.String(), "Memory: 9.0 MiB (max 512M)") && !strings.Contains(b.String(), "Memory: 9 MiB (max 512M)") {
		t.Errorf("running status lacks its memory:\n%s", b.String())
	}
}

// TestServeFlagsAuditRetention: the retention has a default and a bound.
func TestServeFlagsAuditRetention(t *testing.T) {
	cfg, err := parseServe(nil)
	if err != nil || cfg.auditDays != 400 {
		t.Errorf("default retention %d days, %v; want 400", cfg.auditDays, err)
	}
	if cfg, err := parseServe([]string{"--audit-retention-days", "0"}); err != nil || cfg.auditDays != 0 {
		t.Errorf("0 (keep all): %d, %v", cfg.auditDays, err)
	}
	if _, err := parseServe([]string{"--audit-retention-days", "-3"}); err == nil {
		t.Errorf("a negative retention was taken")
	}
	if _, err := parseServe([]string{"--proxy-socket", "/run/x.sock"}); err == nil || !strings.Contains(err.Error(), "--public-url") {
		t.Errorf("--proxy-socket without --public-url: %v", err)
	}
	if _, err := parseServe([]string{"--listen", "none"}); err == nil {
		t.Errorf("--listen none without a proxy socket was taken")
	}
}

func TestServeFlagsLogMemory(t *testing.T) {
	cfg, err := parseServe(nil)
	if err != nil || cfg.logMemoryBytes != procmgr.DefaultLogMemory {
		t.Errorf("default log memory %d, %v; want %d", cfg.logMemoryBytes, err, procmgr.DefaultLogMemory)
	}
	if cfg, err := parseServe([]string{"--log-memory", "1G"}); err != nil || cfg.logMemoryBytes != 1<<30 {
		t.Errorf("--log-memory 1G: %d, %v", cfg.logMemoryBytes, err)
	}
	for _, bad := range []string{"1K", "100G", "-5M", "lots"} {
		if _, err := parseServe([]string{"--log-memory", bad}); err == nil || !strings.Contains(err.Error(), "log-memory") {
			t.Errorf("--log-memory %q: %v, want refused naming the flag", bad, err)
		}
	}
}
