package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// The command line's socket is root's alone (0600) unless --socket-group
// names a group (0660, that group). A member of the group whose uid is
// mapped to a panel customer acts as that customer over the real socket:
// sees and powers only its own instances. A member not mapped is refused,
// and a user outside the group cannot connect at all.
func TestSocketModeGroupAndNonRootUIDs(t *testing.T) {
	tag := procmgrtest.RandomHex(6)
	group := "iktg" + tag
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v %s", name, args, err, out)
		}
	}
	run("groupadd", "--system", group)
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	mapped, unmapped, outsider := "iktc"+tag, "iktn"+tag, "ikto"+tag
	for _, u := range []string{mapped, unmapped, outsider} {
		args := []string{"--system", "--no-create-home", "--shell", "/usr/sbin/nologin", u}
		if u != outsider {
			args = append([]string{"-G", group}, args...)
		}
		run("useradd", args...)
		t.Cleanup(func() { exec.Command("userdel", u).Run() })
	}
	// The test binary's directory is private; the users must run it.
	if err := os.Chmod(filepath.Dir(panelBin), 0o755); err != nil {
		t.Fatal(err)
	}

	// Without --socket-group: root's only.
	d0 := newDaemon(t, "supervise")
	if fi, err := os.Stat(d0.socket); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Gid != 0 {
		t.Errorf("socket without --socket-group: %v %v, want 0600 root:root", fi.Mode(), err)
	}

	d := newDaemonOn(t, "supervise", "127.0.0.1:0", "--socket-group", group)
	g, _ := user.LookupGroup(group)
	gid, _ := strconv.Atoi(g.Gid)
	fi, err := os.Stat(d.socket)
	if err != nil || fi.Mode().Perm() != 0o660 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("socket with --socket-group: %v %v, want 0660 root:%s", fi.Mode(), err, group)
	}
	// Every directory above the socket must let the group through.
	for dir := filepath.Dir(d.socket); dir != "/"; dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755)
	}

	uid := func(name string) string { u, _ := user.Lookup(name); return u.Uid }
	out := d.must("user", "add", "carl", "--role", "customer", "--uid", uid(mapped), "--db", d.db)
	m := regexp.MustCompile(`\(id (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("user add printed %q", out)
	}
	mine, theirs := string(procmgrtest.NewID("own")), string(procmgrtest.NewID("oth"))
	d.must("create", mine, "--owner", m[1])
	d.must("create", theirs)

	as := func(name string, args ...string) (string, error) {
		u, _ := user.Lookup(name)
		uidN, _ := strconv.Atoi(u.Uid)
		gidN, _ := strconv.Atoi(u.Gid)
		cmd := exec.Command(panelBin, args...)
		cmd.Env = []string{"IKABUD_SOCKET=" + d.socket, "PATH=/usr/bin:/bin"}
		groups := []uint32{uint32(gidN)}
		if name != outsider {
			groups = append(groups, uint32(gid))
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uidN), Gid: uint32(gidN), Groups: groups}}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		return o.String() + e.String(), err
	}

	// The mapped member: its own instance only, and may stop it.
	listed, err := as(mapped, "list", "--json")
	if err != nil {
		t.Fatalf("list as the mapped member: %v %s", err, listed)
	}
	var vs []instances.View
	if err := json.Unmarshal([]byte(listed), &vs); err != nil || len(vs) != 1 || vs[0].ID != mine {
		t.Errorf("the mapped customer lists %s (%v), want only %s", listed, err, mine)
	}
	if out, err := as(mapped, "stop", mine); err != nil {
		t.Errorf("the customer could not stop their own instance: %v %s", err, out)
	}
	if out, err := as(mapped, "stop", theirs); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("the customer stopping another's instance: %v %s, want not found", err, out)
	}
	if st := d.must("status", theirs); !strings.Contains(st, "State: running") {
		t.Errorf("another's instance after the customer's attempt:\n%s", st)
	}
	// A member with no panel user: refused by the panel.
	if out, err := as(unmapped, "list"); err == nil || !strings.Contains(out, "not an enabled panel user") {
		t.Errorf("list as an unmapped member: %v %s, want refused", err, out)
	}
	// Not in the group: the socket itself refuses.
	if out, err := as(outsider, "list"); err == nil || !strings.Contains(strings.ToLower(out), "permission denied") {
		t.Errorf("list as a user outside the group: %v %s, want permission denied", err, out)
	}
}
