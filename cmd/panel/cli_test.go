package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestChooseBackend(t *testing.T) {
	for _, tc := range []struct {
		flag    string
		booted  bool
		force   bool
		want    string
		wantErr string
	}{
		{"auto", true, false, "systemd", ""},
		{"auto", false, false, "supervise", ""},
		{"systemd", true, false, "systemd", ""},
		{"systemd", false, false, "", "not booted with systemd"},
		{"supervise", true, false, "", "booted with systemd, which owns the cgroups"},
		{"supervise", true, true, "supervise", ""},
		{"supervise", false, false, "supervise", ""},
		{"docker", true, false, "", "must be auto, systemd or supervise"},
	} {
		got, err := chooseBackend(tc.flag, tc.booted, tc.force)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("chooseBackend(%q, %v) error %v, want one containing %q", tc.flag, tc.booted, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("chooseBackend(%q, %v) = %q, %v; want %q", tc.flag, tc.booted, got, err, tc.want)
		}
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	fs := newFlagSet("create")
	var sf specFlags
	sf.bind(fs)
	pos, err := parseInterspersed(fs, []string{"wp-1", "--php", "8.2", "--env", "A=1", "--env", "B=2", "--cpu-quota=40%"})
	if err != nil {
		t.Fatal(err)
	}
	in := sf.input()
	if len(pos) != 1 || pos[0] != "wp-1" || in.PHP != "8.2" || in.CPUQuota != "40%" || strings.Join(in.Env, ",") != "A=1,B=2" {
		t.Errorf("positionals %q, input %+v", pos, in)
	}
	if _, err := parseInterspersed(newFlagSet("x"), []string{"--nope"}); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v, want a usage error", err)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown verb: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"stop"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "takes one instance id") {
		t.Errorf("stop without id: exit %d, stderr %q", code, errb.String())
	}
}

func TestLogLinesCannotDriveTheTerminal(t *testing.T) {
	got := escapeControls("ok\ttab \x1b]52;c;aGk=\a\x1b[2J\r\u009b31m é")
	if strings.ContainsAny(got, "\x1b\a\r\u009b") {
		t.Errorf("control characters left in %q", got)
	}
	if !strings.Contains(got, "\\x1b]52;c;aGk=") || !strings.Contains(got, "\t") || !strings.Contains(got, "é") {
		t.Errorf("escaped form %q lost text, tab or non-ASCII letters", got)
	}
}

func TestDSNPasswordRefusedOnCommandLine(t *testing.T) {
	if _, err := parseServe([]string{"--db", "mysql://ikabud:s3cret@tcp(127.0.0.1:3306)/ikabud"}); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("a password in --db: %v, want it refused", err)
	}
	if _, err := parseServe([]string{"--db", "mysql://ikabud@tcp(127.0.0.1:3306)/ikabud"}); err != nil {
		t.Errorf("a DSN without a password: %v", err)
	}
	// --db-admin follows the same rules, with or without the scheme.
	if _, err := parseServe([]string{"--db-admin", "root:s3cret@unix(/run/mysqld/mysqld.sock)/"}); err == nil || !strings.Contains(err.Error(), "IKABUD_DB_ADMIN") {
		t.Errorf("a password in --db-admin: %v, want it refused", err)
	}
	if _, err := parseServe([]string{"--db-admin", "root@unix(/run/mysqld/mysqld.sock)/"}); err != nil {
		t.Errorf("--db-admin without a password: %v", err)
	}
	t.Setenv("IKABUD_DB", "mysql://ikabud:s3cret@tcp(127.0.0.1:3306)/ikabud")
	cfg, err := parseServe(nil)
	if err != nil || cfg.db != "mysql://ikabud:s3cret@tcp(127.0.0.1:3306)/ikabud" {
		t.Errorf("a password in IKABUD_DB: %q %v, want it taken", cfg.db, err)
	}
}

type bindDenying bool

func (b bindDenying) SocketBindDenied() bool { return bool(b) }

// The warning at start names a port an instance could take: one from the
// kernel's unprivileged start up, unless systemd denies instances every
// bind; never one below it.
func TestPortTenantsCanTake(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		backend any
		want    bool
	}{
		{"127.0.0.1:8080", bindDenying(false), true},
		{"127.0.0.1:8080", "a backend that cannot tell", true},
		{"127.0.0.1:8080", bindDenying(true), false},
		{"127.0.0.1:843", bindDenying(false), false},
		{"127.0.0.1:0", bindDenying(false), true},
	} {
		if got := portTenantsCanTake(tc.addr, tc.backend); got != tc.want {
			t.Errorf("portTenantsCanTake(%q, %v) = %v, want %v", tc.addr, tc.backend, got, tc.want)
		}
	}
}
