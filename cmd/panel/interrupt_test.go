package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
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
