package procmgr_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
	"golang.org/x/sys/unix"
)

// Kept files go to root, and a symlink in the tree is changed itself,
// never what it points at.
func TestDisownTreeNeverFollowsLinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files: run it as root (make test)")
	}
	base, l, h := tempHost(t, "ikt-disown")
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

	if err := h.DisownTree(t.Context(), "site"); err != nil {
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
	if err := h.DisownTree(t.Context(), "gone"); err != nil {
		t.Errorf("DisownTree of a missing tree: %v", err)
	}
}

// A tree far deeper than any recursion limit is given to root whole; a
// symlink to a non-empty directory outside the tree and a hard link to
// another user's file leave what they point at with its owner.
func TestDisownTreeDeepLinkedAndHardLinked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files: run it as root (make test)")
	}
	base, l, h := tempHost(t, "ikt-disown2")
	const tenant, other = 250002, 4243
	// Outside the tree: a directory with a file, and a file, of another user.
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o755)
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("x"), 0o600)
	foreign := filepath.Join(l.InstancesRoot, "foreign") // same filesystem, for the hard link
	os.MkdirAll(l.InstancesRoot, 0o755)
	os.WriteFile(foreign, []byte("y"), 0o600)
	// The directory a link points at is the tenant's own (as its files in
	// /tmp would be): only O_NOFOLLOW keeps the walk out of it. The file
	// hard-linked in is another user's: only the owner check keeps it.
	for _, p := range []string{outside, secret} {
		os.Chown(p, tenant, tenant)
	}
	os.Chown(foreign, other, other)
	site := filepath.Join(l.InstancesRoot, "site")
	deep := site
	for range 1500 {
		deep = filepath.Join(deep, "d")
	}
	if err := os.MkdirAll(deep, 0o750); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(deep, "bottom.php"), []byte("<?php"), 0o640)
	// Many entries in one directory, with a subdirectory among them, so
	// the walk descends in the middle of a batch of entries.
	wide := filepath.Join(site, "wide")
	os.Mkdir(wide, 0o750)
	for i := range 600 {
		os.WriteFile(filepath.Join(wide, fmt.Sprintf("f%03d", i)), nil, 0o640)
		if i == 100 {
			os.Mkdir(filepath.Join(wide, "sub"), 0o750)
			os.WriteFile(filepath.Join(wide, "sub", "x"), nil, 0o640)
		}
	}
	if err := os.Symlink(outside, filepath.Join(site, "to-dir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(foreign, filepath.Join(site, "hard")); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(site, func(p string, fi os.FileInfo, _ error) error {
		if fi != nil && fi.Mode().IsRegular() && fi.Sys().(*syscall.Stat_t).Uid == other {
			return nil // the hard link to the other user's file
		}
		return os.Lchown(p, tenant, tenant)
	})

	if err := h.DisownTree(t.Context(), "site"); err != nil {
		t.Fatal(err)
	}
	left := 0
	filepath.Walk(site, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Sys().(*syscall.Stat_t).Uid == tenant {
			if left++; left < 5 {
				t.Errorf("%s still the tenant's", p)
			}
		}
		return nil
	})
	if left > 0 {
		t.Errorf("%d entries still the tenant's after DisownTree", left)
	}
	for p, want := range map[string]uint32{outside: tenant, secret: tenant, foreign: other} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != want {
			t.Errorf("%s (outside the tree) now owned by %d, want %d", p, uid, want)
		}
	}
	// An interrupted walk is finished by the next: here, nothing to do.
	if err := h.DisownTree(t.Context(), "site"); err != nil {
		t.Errorf("second DisownTree: %v", err)
	}
	// A walk is bounded by its context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	os.Lchown(site, tenant, tenant)
	if err := h.DisownTree(ctx, "site"); !errors.Is(err, context.Canceled) {
		t.Errorf("DisownTree with an ended context: %v", err)
	}
}

// ConfigCurrent says whether the config on disk is the one a spec renders
// to: after WriteConfig yes; for a changed spec, or a config edited by
// hand, no.
func TestConfigCurrent(t *testing.T) {
	_, l, h := tempHost(t, "ikt-cfgcur")
	spec, err := procmgr.ParseSpec("site", procmgr.SpecInput{MaxChildren: "4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.ConfigCurrent(spec) {
		t.Errorf("current with no config written")
	}
	// php-fpm --test of the candidate runs as the instance user and wants
	// its chdir (public/).
	if err := os.MkdirAll(l.PublicDir(spec.ID), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteConfig(nobody, spec); err != nil {
		t.Fatal(err)
	}
	if !h.ConfigCurrent(spec) {
		t.Errorf("not current right after WriteConfig")
	}
	changed, _ := procmgr.ParseSpec("site", procmgr.SpecInput{MaxChildren: "5"}, nil)
	if h.ConfigCurrent(changed) {
		t.Errorf("current for a spec with other pool settings")
	}
	if err := os.WriteFile(l.FPMConfigPath(spec.ID), []byte("; edited\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if h.ConfigCurrent(spec) {
		t.Errorf("current after the file was edited by hand")
	}
}

// nobody stands for an instance's user where php-fpm --test runs as it.
var nobody = procmgr.InstanceUser{Name: "nobody", UID: 65534, GID: 65534}

// A config php-fpm refuses is never written: the candidate is checked by
// php-fpm --test, as the instance's user, before it replaces the current one.
func TestWriteConfigCheckedByPHPFPM(t *testing.T) {
	_, l, h := tempHost(t, "ikt-cfgchk")
	spec, err := procmgr.ParseSpec("site", procmgr.SpecInput{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec.PHP.FPMBinary()); err != nil {
		t.Fatalf("php-fpm for PHP %s is missing: install Debian's php%s-fpm", spec.PHP, spec.PHP)
	}
	// No public/: php-fpm refuses the pool's chdir.
	_, err = h.WriteConfig(nobody, spec)
	if err == nil || !strings.Contains(err.Error(), "php-fpm --test refused") {
		t.Fatalf("WriteConfig without the instance's tree = %v, want php-fpm's refusal", err)
	}
	if _, serr := os.Stat(l.FPMConfigPath(spec.ID)); !os.IsNotExist(serr) {
		t.Errorf("a refused config was written: %v", serr)
	}
	if entries, _ := os.ReadDir(l.ConfigDir(spec.ID)); len(entries) > 1 {
		t.Errorf("leftovers in %s: %v", l.ConfigDir(spec.ID), entries)
	}
	if err := os.MkdirAll(l.PublicDir(spec.ID), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteConfig(nobody, spec); err != nil {
		t.Fatalf("WriteConfig with the tree: %v", err)
	}
}

// tempHost is a Host over a layout in a temporary directory (base), which
// other users may traverse (php-fpm --test runs as the instance's user).
func tempHost(t *testing.T, prefix string) (string, procmgr.Layout, *procmgr.Host) {
	t.Helper()
	base, err := os.MkdirTemp("", prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	l := procmgr.Layout{InstancesRoot: filepath.Join(base, "i"), ConfigRoot: filepath.Join(base, "c"),
		RuntimeRoot: "/run/" + prefix, UnitDir: base, UnitPrefix: prefix}
	h, err := procmgr.NewHost(l)
	if err != nil {
		t.Fatal(err)
	}
	return base, l, h
}

// TestInstancesRootIsATopDir: on ext4 the instances root has the "T"
// attribute, so each new instance's files go to a block group of their own
// (see markTopDir; the speed is in make bench's create figure).
func TestInstancesRootIsATopDir(t *testing.T) {
	base := filepath.Join("/var/lib/ikabud-test", "topdir-"+fmt.Sprint(os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(base) })
	var fs unix.Statfs_t
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(base, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("this test needs /var/lib on ext4 (found filesystem magic %#x)", fs.Type)
	}
	l := procmgr.Layout{InstancesRoot: filepath.Join(base, "i"), ConfigRoot: filepath.Join(base, "c"),
		RuntimeRoot: "/run/ikt-topdir", UnitDir: base, UnitPrefix: "ikt-topdir"}
	if _, err := procmgr.NewHost(l); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(l.InstancesRoot, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatal(err)
	}
	const topDir = 0x00020000 // FS_TOPDIR_FL
	if flags&topDir == 0 {
		t.Fatalf("instances root flags %#x: no T attribute (FS_TOPDIR_FL)", flags)
	}
	// A second start finds it set and keeps it.
	if _, err := procmgr.NewHost(l); err != nil {
		t.Fatal(err)
	}
}
