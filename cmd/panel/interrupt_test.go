package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
)

// The panel killed (kill -9) in the middle of a remove --purge and in the
// middle of a create, then started again: the purge is finished as a
// purge, the create is finished, and after a purge nothing of the instance
// is left (user, group, files, config, runtime directory, service) and the
// id can be created again. On both real backends, with the real binary.
func TestPanelKilledDuringRemoveAndCreate(t *testing.T) {
	forEachBackend(t, testPanelKilledMidway)
}

func testPanelKilledMidway(t *testing.T, backend string) {
	d := newDaemon(t, backend)
	id := string(procmgrtest.NewID("mid"))
	d.must("create", id)
	// Enough files that removing them takes a while, so the kill lands
	// while the instance is recorded as purging.
	pub := d.layout.PublicDir(procmgr.InstanceID(id))
	for i := range 40 {
		dir := filepath.Join(pub, fmt.Sprintf("d%02d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 500 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", j)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	go d.panel("remove", id, "--purge")
	d.killWhenPhase(id, "purging")
	d.start()
	d.waitGone(id)
	assertNothingLeft(t, d, id)
	d.must("create", id) // the id is free again
	d.must("remove", id, "--purge")
	assertNothingLeft(t, d, id)

	// A create interrupted as soon as it is recorded: finished after the
	// restart, and then removable without a trace.
	id2 := string(procmgrtest.NewID("mid2"))
	go d.panel("create", id2)
	d.killWhenPhase(id2, "provisioning")
	d.start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := d.panel("status", id2)
		if err == nil && strings.Contains(out, "State: running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("interrupted create of %s not finished: %v\n%s\ndaemon log:\n%s", id2, err, out, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.must("remove", id2, "--purge")
	assertNothingLeft(t, d, id2)
	d.must("create", id2)
}

// killWhenPhase polls the database until id's row is in phase, then kills
// the daemon with SIGKILL.
func (d *daemon) killWhenPhase(id, phase string) {
	d.t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, d.db, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if row, err := db.GetInstance(ctx, id); err == nil && row.Phase == phase {
			d.stop(syscall.SIGKILL)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.t.Fatalf("%s never seen in phase %s; daemon log:\n%s", id, phase, d.log)
}

// waitGone waits until the daemon no longer knows id.
func (d *daemon) waitGone(id string) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.panel("status", id); err != nil && strings.Contains(err.Error(), "not found") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("%s still known 30 s after the panel came back; daemon log:\n%s", id, d.log)
}

func assertNothingLeft(t *testing.T, d *daemon, id string) {
	t.Helper()
	iid := procmgr.InstanceID(id)
	if _, err := user.Lookup(iid.UserName()); err == nil {
		t.Errorf("user %s still exists", iid.UserName())
	}
	if _, err := user.LookupGroup(iid.UserName()); err == nil {
		t.Errorf("group %s still exists", iid.UserName())
	}
	for _, p := range []string{d.layout.InstanceDir(iid), d.layout.ConfigDir(iid), d.layout.RuntimeDir(iid)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists", p)
		}
	}
	if n := countMasters(t, d.layout.FPMConfigPath(iid)); n != 0 {
		t.Errorf("%d php-fpm masters of %s still run", n, id)
	}
}

// The panel killed while removing without purge: after the restart the
// removal is finished as a keep: user, group, config and masters gone, the
// files kept and given to root.
func TestPanelKilledDuringRemoveKeep(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		d := newDaemon(t, backend)
		id := string(procmgrtest.NewID("keep"))
		d.must("create", id)
		pub := d.layout.PublicDir(procmgr.InstanceID(id))
		for i := range 40 {
			dir := filepath.Join(pub, fmt.Sprintf("d%02d", i))
			os.Mkdir(dir, 0o755)
			for j := range 500 {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", j)), nil, 0o644)
			}
		}
		// Given to the instance, as its own files would be.
		u, err := user.Lookup(procmgr.InstanceID(id).UserName())
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		filepath.Walk(pub, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, uid) })
		go d.panel("remove", id)
		d.killWhenPhase(id, "removing")
		d.start()
		d.waitGone(id)
		iid := procmgr.InstanceID(id)
		if _, err := user.Lookup(iid.UserName()); err == nil {
			t.Errorf("user %s still exists", iid.UserName())
		}
		for _, p := range []string{d.layout.ConfigDir(iid), d.layout.RuntimeDir(iid)} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s still exists", p)
			}
		}
		left := 0
		filepath.Walk(d.layout.InstanceDir(iid), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Sys().(*syscall.Stat_t).Uid != 0 {
				left++
			}
			return nil
		})
		if _, err := os.Stat(filepath.Join(pub, "d39", "f499")); err != nil || left != 0 {
			t.Errorf("kept files: %v, %d entries not root's; want all kept and root's", err, left)
		}
		os.RemoveAll(d.layout.InstanceDir(iid))
	})
}

// A create that fails half way on a real backend (its config directory is
// taken by a file) is rolled back: no user, group, files or master are
// left, and once the obstacle is gone the id can be created.
func TestFailedCreateRolledBackOnRealBackends(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		d := newDaemon(t, backend)
		id := string(procmgrtest.NewID("rb"))
		cfg := d.layout.ConfigDir(procmgr.InstanceID(id))
		os.MkdirAll(filepath.Dir(cfg), 0o755)
		if err := os.WriteFile(cfg, []byte("in the way"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := d.panel("create", id); err == nil {
			t.Fatalf("create with its config directory taken succeeded:\n%s", out)
		}
		os.Remove(cfg)
		if _, err := d.panel("status", id); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("status after the failed create: %v, want not found", err)
		}
		assertNothingLeft(t, d, id)
		d.must("create", id)
	})
}

// An instance that keeps exiting cleanly (no restart policy counts a clean
// exit) is started again by the reconciler, five times a minute at most;
// then it is left stopped, with the reason in its status, until a person
// starts it.
func TestAutoStartLimitOnRealBackends(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		d := newDaemon(t, backend)
		id := string(procmgrtest.NewID("as"))
		pid := field(t, pidRe, d.must("create", id))
		for round := 0; ; round++ {
			if pid <= 1 {
				t.Fatalf("round %d: no master pid", round)
			}
			// SIGQUIT: php-fpm's graceful shutdown, a clean exit.
			if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var st string
			next := 0
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				st, _ = d.panel("status", id)
				if m := pidRe.FindStringSubmatch(st); m != nil {
					next, _ = strconv.Atoi(m[1])
				}
				if (next != 0 && next != pid && strings.Contains(st, "State: running")) || strings.Contains(st, "not started again") {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if strings.Contains(st, "not started again") {
				if round != 5 {
					t.Errorf("left stopped after %d automatic starts, want 5", round)
				}
				if !strings.Contains(st, "State: stopped") {
					t.Errorf("status at the limit:\n%s", st)
				}
				break
			}
			if next == 0 || next == pid {
				t.Fatalf("round %d: not started again and no limit reached:\n%s\ndaemon log:\n%s", round, st, d.log)
			}
			if round > 6 {
				t.Fatalf("started again %d times, the limit is 5", round)
			}
			pid = next
		}
		// A person's start works, and resets the count.
		if st := d.must("start", id); !strings.Contains(st, "State: running") {
			t.Errorf("start after the limit:\n%s", st)
		}
	})
}

// A client that hangs up in the middle of a create (the command killed, a
// browser tab closed) does not leave the instance half made: the daemon
// finishes the create on its own, and the instance runs.
func TestClientHangsUpDuringCreate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		d := newDaemon(t, backend)
		id := string(procmgrtest.NewID("hup"))
		cmd := exec.Command(panelBin, "create", id)
		cmd.Env = append(os.Environ(), "IKABUD_SOCKET="+d.socket)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Hang up as soon as the create is recorded.
		ctx := context.Background()
		db, err := store.Open(ctx, d.db, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if row, err := db.GetInstance(ctx, id); err == nil && row.Phase == "provisioning" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the create of %s was never recorded", id)
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		// The status shows running as soon as the backend's event
		// arrives; the create is done when its row says ready.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			out, err := d.panel("status", id)
			row, rerr := db.GetInstance(ctx, id)
			if err == nil && strings.Contains(out, "State: running") && field(t, pidRe, out) > 1 && rerr == nil && row.Phase == "ready" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the client hung up, %s is: %v\n%s\nrow %+v %v\ndaemon log:\n%s", id, err, out, row, rerr, d.log)
			}
		}
		n := 0
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if n = countMasters(t, d.layout.FPMConfigPath(procmgr.InstanceID(id))); n == 1 {
				break
			}
		}
		if n != 1 {
			t.Errorf("%d masters of %s, want 1", n, id)
		}
	})
}
