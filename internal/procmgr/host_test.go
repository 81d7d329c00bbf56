package procmgr_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
)

// Kept files go to root, and a symlink in the tree is changed itself,
// never what it points at.
func TestDisownTreeNeverFollowsLinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files: run it as root (make test)")
	}
	base := t.TempDir()
	l := procmgr.Layout{InstancesRoot: filepath.Join(base, "i"), ConfigRoot: filepath.Join(base, "c"),
		RuntimeRoot: "/run/ikt-disown", UnitDir: base, UnitPrefix: "ikt-disown"}
	h, err := procmgr.NewHost(l)
	if err != nil {
		t.Fatal(err)
	}
	const tenant = 250001
	victim := filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte("not the tenant's"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(victim, 4242, 4242)
	tree := filepath.Join(l.InstancesRoot, "site", "public", "deep")
	if err := os.MkdirAll(tree, 0o750); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(tree, "index.php")
	os.WriteFile(page, []byte("<?php"), 0o640)
	link := filepath.Join(l.InstancesRoot, "site", "public", "evil")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(filepath.Join(l.InstancesRoot, "site"), func(p string, _ os.FileInfo, _ error) error {
		return os.Lchown(p, tenant, tenant)
	})

	if err := h.DisownTree("site"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(l.InstancesRoot, "site"), tree, page, link} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if s := fi.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != 0 {
			t.Errorf("%s owned by %d:%d after DisownTree, want root", p, s.Uid, s.Gid)
		}
	}
	fi, _ := os.Stat(victim)
	if s := fi.Sys().(*syscall.Stat_t); s.Uid != 4242 {
		t.Errorf("the symlink's target was chowned to %d", s.Uid)
	}
	if err := h.DisownTree("gone"); err != nil {
		t.Errorf("DisownTree of a missing tree: %v", err)
	}
}
