package procmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Host performs the operating-system work that every backend shares: Unix
// users and groups, the instance's directory tree and its config files. It
// runs fixed argv commands only, never a shell, and never follows a symlink
// inside a directory a tenant can write.
type Host struct {
	Layout Layout
	// FPM says how configs are rendered for the backend using this host.
	FPM FPMOptions
	// userMu serialises useradd/userdel/gpasswd, which lock /etc/passwd and
	// fail rather than wait when another holds the lock.
	userMu sync.Mutex
}

// NewHost checks the layout and makes its root directories.
func NewHost(l Layout) (*Host, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("procmgr: layout: %w", err)
	}
	for _, d := range []string{l.InstancesRoot, filepath.Join(l.ConfigRoot, "instances")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("procmgr: %w", err)
		}
	}
	// Best effort: the attribute only places new instances' files apart
	// (see markTopDir); a filesystem without it works the same, slower.
	_ = markTopDir(l.InstancesRoot)
	return &Host{Layout: l, FPM: FPMOptions{ErrorLog: ErrorLogSyslog}}, nil
}

// The uid and gid range of instance users: above the 16-bit ids that older
// tools assume for people, and wide enough for any one host.
const (
	InstanceIDMin = 200000
	InstanceIDMax = 299999
)

// userComment marks a Unix user as made by the panel for one instance, so the
// panel never adopts or deletes a user it did not create.
func userComment(id InstanceID) string { return "Ikabud instance " + string(id) }

// InstanceUser is the resolved Unix identity of an instance.
type InstanceUser struct {
	Name string
	UID  int
	GID  int
}

// LookupUser finds the instance's user. It returns ErrNotFound if there is
// none and ErrConflict if a user of that name exists but is not the panel's.
func (h *Host) LookupUser(id InstanceID) (InstanceUser, error) { return LookupInstanceUser(id) }

// LookupInstanceUser finds the instance's user, as Host.LookupUser does, for
// callers that act as it without a Host (the CMS installer).
func LookupInstanceUser(id InstanceID) (InstanceUser, error) {
	u, err := user.Lookup(id.UserName())
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return InstanceUser{}, fmt.Errorf("procmgr: user %s: %w", id.UserName(), ErrNotFound)
		}
		return InstanceUser{}, fmt.Errorf("procmgr: look up user %s: %w", id.UserName(), err)
	}
	if u.Name != userComment(id) {
		return InstanceUser{}, fmt.Errorf("procmgr: user %s exists but was not made by the panel (comment %q): %w", u.Username, u.Name, ErrConflict)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return InstanceUser{Name: u.Username, UID: uid, GID: gid}, nil
}

// EnsureUser creates the instance's system user and group if missing. It
// reports whether it created them, so a failed provision can undo exactly
// what it made.
func (h *Host) EnsureUser(ctx context.Context, id InstanceID) (InstanceUser, bool, error) {
	h.userMu.Lock()
	defer h.userMu.Unlock()
	if err := waitAccountLocks(ctx); err != nil {
		return InstanceUser{}, false, err
	}
	u, err := h.LookupUser(id)
	if err == nil {
		return u, false, h.addWebUser(ctx, id)
	}
	if !errors.Is(err, ErrNotFound) {
		return InstanceUser{}, false, err
	}
	if _, gerr := user.LookupGroup(id.UserName()); gerr == nil {
		return InstanceUser{}, false, fmt.Errorf("procmgr: group %s exists without its user: %w", id.UserName(), ErrConflict)
	}
	if err := run(ctx, "useradd", UserAddArgs(id.UserName(), h.Layout.InstanceDir(id), userComment(id))...); err != nil {
		// A useradd of an earlier attempt (a panel killed mid-create
		// leaves it running) may have made the user since the look-up:
		// then it is there, as it should be.
		if u, lerr := h.LookupUser(id); lerr == nil {
			return u, false, h.addWebUser(ctx, id)
		}
		return InstanceUser{}, false, err
	}
	u, err = h.LookupUser(id)
	if err != nil {
		return InstanceUser{}, true, err
	}
	return u, true, h.addWebUser(ctx, id)
}

// UserAddArgs is useradd's argv (after the command) for an instance's
// account: a system user with a group of its own, no home made, no shell.
// Instance users get ids from a range of their own, not Debian's system
// range (100-999), which would cap a host at ~850 instances.
func UserAddArgs(name, home, comment string) []string {
	return []string{"--system", "--user-group", "--no-create-home",
		"-K", fmt.Sprintf("SYS_UID_MIN=%d", InstanceIDMin), "-K", fmt.Sprintf("SYS_UID_MAX=%d", InstanceIDMax),
		"-K", fmt.Sprintf("SYS_GID_MIN=%d", InstanceIDMin), "-K", fmt.Sprintf("SYS_GID_MAX=%d", InstanceIDMax),
		"--home-dir", home, "--shell", "/usr/sbin/nologin", "--comment", comment, name}
}

func (h *Host) addWebUser(ctx context.Context, id InstanceID) error {
	if h.Layout.WebUser == "" {
		return nil
	}
	if _, err := user.Lookup(h.Layout.WebUser); err != nil {
		// No web server installed yet: nothing to add.
		return nil
	}
	g, err := user.LookupGroup(id.UserName())
	if err != nil {
		return fmt.Errorf("procmgr: group %s: %w", id.UserName(), err)
	}
	if members, err := groupMembers(g.Name); err == nil && members[h.Layout.WebUser] {
		return nil
	}
	return run(ctx, "gpasswd", "--add", h.Layout.WebUser, id.UserName())
}

// groupMembers reads the supplementary members of a group from /etc/group.
func groupMembers(name string) (map[string]bool, error) {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 4 && f[0] == name {
			m := map[string]bool{}
			for _, u := range strings.Split(f[3], ",") {
				if u != "" {
					m[u] = true
				}
			}
			return m, nil
		}
	}
	return nil, fmt.Errorf("procmgr: group %s not found", name)
}

// RemoveUser deletes the instance's user and group if they are the panel's.
// A missing user is not an error.
func (h *Host) RemoveUser(ctx context.Context, id InstanceID) error {
	h.userMu.Lock()
	defer h.userMu.Unlock()
	if err := waitAccountLocks(ctx); err != nil {
		return err
	}
	if _, err := h.LookupUser(id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if err := run(ctx, "userdel", id.UserName()); err != nil {
		return err
	}
	// userdel removes the user's private group when USERGROUPS_ENAB is set;
	// make sure of it either way.
	if _, err := user.LookupGroup(id.UserName()); err == nil {
		return run(ctx, "groupdel", id.UserName())
	}
	return nil
}

// accountLocks are the lock files shadow-utils (useradd, userdel, gpasswd)
// hold while they rewrite the account files; each holds its owner's pid.
var accountLocks = []string{"/etc/passwd.lock", "/etc/shadow.lock", "/etc/group.lock", "/etc/gshadow.lock"}

// waitAccountLocks waits while another process rewrites the account files.
// A panel killed during useradd leaves the useradd running: until it ends,
// /etc/passwd may name the user while /etc/group lacks its group, and the
// next panel must not read that half-written state as the truth. A lock
// whose process is gone is stale (the tools themselves then take it over).
func waitAccountLocks(ctx context.Context) error {
	for {
		held := ""
		for _, p := range accountLocks {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil || pid <= 0 {
				continue
			}
			if ProcessAlive(pid) {
				held = p
				break
			}
		}
		if held == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("procmgr: %s is held by another process: %w", held, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// run executes a fixed argv and returns its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("procmgr: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// EnsureTree makes the instance's directory tree owned by its user, without
// following any symlink a tenant may have planted in it. It reports whether it
// created the instance directory.
func (h *Host) EnsureTree(u InstanceUser, id InstanceID) (bool, error) {
	root, err := unix.Open(h.Layout.InstancesRoot, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("procmgr: open %s: %w", h.Layout.InstancesRoot, err)
	}
	defer unix.Close(root)
	created, dir, err := ensureDirAt(root, string(id), u.UID, u.GID, 0o750)
	if err != nil {
		return false, fmt.Errorf("procmgr: instance dir of %s: %w", id, err)
	}
	defer unix.Close(dir)
	for _, sub := range []struct {
		name string
		mode uint32
	}{{"public", 0o750}, {"tmp", 0o700}, {"sessions", 0o700}} {
		_, fd, err := ensureDirAt(dir, sub.name, u.UID, u.GID, sub.mode)
		if err != nil {
			return created, fmt.Errorf("procmgr: %s/%s: %w", h.Layout.InstanceDir(id), sub.name, err)
		}
		unix.Close(fd)
	}
	return created, nil
}

// ensureDirAt makes name inside the directory dirfd, refusing symlinks, and
// sets owner and mode through the opened descriptor, never through a path.
func ensureDirAt(dirfd int, name string, uid, gid int, mode uint32) (bool, int, error) {
	created := true
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			return false, -1, err
		}
		created = false
	}
	fd, err := unix.Openat(dirfd, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return false, -1, fmt.Errorf("%s is not a directory (a symlink or file was put in its place): %w", name, ErrConflict)
		}
		return false, -1, err
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		unix.Close(fd)
		return created, -1, err
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		unix.Close(fd)
		return created, -1, err
	}
	return created, fd, nil
}

// Retire removes the instance's user and group, and its files if purge;
// kept files are given to root first. Missing parts are not errors. Every
// step is attempted even when one before it failed; the error names each
// that failed, and so what is left.
func (h *Host) Retire(ctx context.Context, id InstanceID, purge bool) error {
	// Before the uid can go to another tenant: no process of it left (a
	// setsid child outlives its master where no cgroup tracks it), and
	// nothing of it in /tmp, /var/tmp, /dev/shm or System V IPC.
	var leftErr error
	if u, err := h.LookupUser(id); err == nil {
		kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		leftErr = errors.Join(KillUID(kctx, u.UID), RemoveUIDLeftovers(u.UID))
		cancel()
	}
	var treeErr error
	if purge {
		treeErr = h.RemoveTree(id)
	} else {
		treeErr = h.DisownTree(ctx, id)
	}
	return errors.Join(leftErr, treeErr, h.RemoveUser(ctx, id))
}

// DisownTree gives a kept instance tree (removed without purge) to root, so
// that a later instance that is given the same uid cannot read it.
//
// Only entries owned by the instance (the owner of its directory) change:
// a file another user owns, hard-linked into the tree by the tenant, keeps
// its owner. The walk goes through descriptors opened with O_NOFOLLOW and
// changes each entry relative to its directory without following it, so a
// directory swapped for a symlink meanwhile can never make root chown what
// the link names. It is iterative (a stack of directory descriptors, no
// recursion and no depth limit), bounded by ctx, and post-order: a
// directory is given away after its contents, so an interrupted walk is
// finished by the next one, which skips what is root's already.
func (h *Host) DisownTree(ctx context.Context, id InstanceID) error {
	root, err := unix.Open(h.Layout.InstancesRoot, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("procmgr: open %s: %w", h.Layout.InstancesRoot, err)
	}
	defer unix.Close(root)
	if err := disownTree(ctx, root, string(id)); err != nil {
		return fmt.Errorf("procmgr: give %s to root: %w", h.Layout.InstanceDir(id), err)
	}
	return nil
}

// dirFrame is one open directory of the walk, with the entries read from
// it and not yet handled.
type dirFrame struct {
	dir     *os.File
	fd      int
	pending []os.DirEntry
	eof     bool
}

func disownTree(ctx context.Context, parent int, name string) error {
	top, err := unix.Openat(parent, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(top, &st); err != nil {
		unix.Close(top)
		return err
	}
	owner := st.Uid
	if owner == 0 {
		unix.Close(top)
		return nil // root's already: nothing of the tenant's is left in it
	}
	stack := []*dirFrame{{dir: os.NewFile(uintptr(top), name), fd: top}}
	defer func() {
		for _, f := range stack {
			f.dir.Close()
		}
	}()
	// disown gives one entry of dir to root; it returns the descriptor of
	// a directory to descend into, or -1.
	disown := func(dir int, name string) (int, error) {
		var est unix.Stat_t
		if err := unix.Fstatat(dir, name, &est, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return -1, nil
			}
			return -1, err
		}
		if est.Uid != owner {
			return -1, nil // root's (done) or another user's: left as it is
		}
		if est.Mode&unix.S_IFMT == unix.S_IFDIR {
			fd, err := unix.Openat(dir, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
			switch {
			case err == nil:
				return fd, nil
			case errors.Is(err, unix.ENOENT):
				return -1, nil
			case !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP):
				return -1, err
			}
			// Swapped for a file or a link since the stat: change it as one.
		}
		if err := unix.Fchownat(dir, name, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
			return -1, err
		}
		return -1, nil
	}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		cur := stack[len(stack)-1]
		if len(cur.pending) == 0 && !cur.eof {
			entries, err := cur.dir.ReadDir(256)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			cur.pending, cur.eof = entries, err != nil
			continue
		}
		if len(cur.pending) == 0 {
			// Every entry handled: give the directory itself away, and
			// go up.
			if err := unix.Fchown(cur.fd, 0, 0); err != nil {
				return err
			}
			cur.dir.Close()
			stack = stack[:len(stack)-1]
			continue
		}
		e := cur.pending[0]
		cur.pending = cur.pending[1:]
		fd, err := disown(cur.fd, e.Name())
		if err != nil {
			return err
		}
		if fd >= 0 {
			stack = append(stack, &dirFrame{dir: os.NewFile(uintptr(fd), e.Name()), fd: fd})
		}
	}
	return nil
}

// ConfigCurrent reports whether the config on disk is the one spec renders
// to (the php-fpm config and the link to its PHP's php-fpm): a start need
// not write it again.
func (h *Host) ConfigCurrent(spec Spec) bool {
	data, err := os.ReadFile(h.Layout.FPMConfigPath(spec.ID))
	if err != nil || !bytes.Equal(data, RenderFPMConfigWith(h.Layout, spec, h.FPM)) {
		return false
	}
	link, err := os.Readlink(h.Layout.FPMBinaryLink(spec.ID))
	return err == nil && link == spec.PHP.FPMBinary()
}

// RemoveTree deletes the instance's files. os.RemoveAll removes symlinks
// themselves and never follows them.
func (h *Host) RemoveTree(id InstanceID) error {
	if err := os.RemoveAll(h.Layout.InstanceDir(id)); err != nil {
		return fmt.Errorf("procmgr: remove %s: %w", h.Layout.InstanceDir(id), err)
	}
	return nil
}

// WriteConfig writes the instance's php-fpm config and the link to its php-fpm
// binary in the root-owned config directory, readable by the instance's group.
// It reports whether anything changed.
func (h *Host) WriteConfig(u InstanceUser, spec Spec) (bool, error) {
	dir := h.Layout.ConfigDir(spec.ID)
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return false, fmt.Errorf("procmgr: %w", err)
	}
	if err := os.Lchown(dir, 0, u.GID); err != nil {
		return false, fmt.Errorf("procmgr: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return false, fmt.Errorf("procmgr: %w", err)
	}
	// The candidate is checked by the php-fpm that will run it, as the
	// instance's user, before it takes the place of the current config: a
	// config php-fpm refuses never reaches a start or a reload.
	check := func(candidate string) error { return checkFPMConfig(spec.PHP.FPMBinary(), candidate, u) }
	changed, err := writeFileAtomic(h.Layout.FPMConfigPath(spec.ID), RenderFPMConfigWith(h.Layout, spec, h.FPM), 0, u.GID, 0o640, check)
	if err != nil {
		return false, err
	}
	linkChanged, err := symlinkAtomic(spec.PHP.FPMBinary(), h.Layout.FPMBinaryLink(spec.ID))
	return changed || linkChanged, err
}

// ConfigExists reports whether the instance has a php-fpm config: the mark of
// a provisioned instance on this host.
func (h *Host) ConfigExists(id InstanceID) bool {
	_, err := os.Lstat(h.Layout.FPMConfigPath(id))
	return err == nil
}

// Provisioned returns nil when the instance has a config on this host, and
// an error wrapping ErrNotFound when it has none: the check before every
// action on an existing instance, in every backend.
func (h *Host) Provisioned(id InstanceID) error {
	if !h.ConfigExists(id) {
		return fmt.Errorf("procmgr: %s: %w", id, ErrNotFound)
	}
	return nil
}

// RemoveConfig deletes the instance's config directory.
func (h *Host) RemoveConfig(id InstanceID) error {
	if err := os.RemoveAll(h.Layout.ConfigDir(id)); err != nil {
		return fmt.Errorf("procmgr: %w", err)
	}
	return nil
}

// ListConfigured returns the ids of all instances with a config on this host.
func (h *Host) ListConfigured() ([]InstanceID, error) {
	entries, err := os.ReadDir(filepath.Join(h.Layout.ConfigRoot, "instances"))
	if err != nil {
		return nil, fmt.Errorf("procmgr: %w", err)
	}
	var ids []InstanceID
	for _, e := range entries {
		id, err := ParseInstanceID(e.Name())
		if err == nil && h.ConfigExists(id) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// checkFPMConfig runs php-fpm --test on a config, as the instance's user
// (php-fpm refuses a pool without a user when run as root).
func checkFPMConfig(bin, config string, u InstanceUser) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--test", "--fpm-config", config)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}}
	// Its output goes to a pipe the instance's user owns: a config whose
	// error_log is /proc/self/fd/2 (the supervisor's) reopens it, which a
	// pipe of root's refuses.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("procmgr: %w", err)
	}
	defer pr.Close()
	if err := pw.Chown(u.UID, u.GID); err != nil {
		pw.Close()
		return fmt.Errorf("procmgr: %w", err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	var out []byte
	if err == nil {
		out, _ = io.ReadAll(io.LimitReader(pr, 64<<10))
		err = cmd.Wait()
	}
	if err == nil && !bytes.Contains(out, []byte("test is successful")) {
		err = errors.New("no \"test is successful\"")
	}
	if err != nil {
		return fmt.Errorf("procmgr: php-fpm --test refused the new config: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// WriteFileAtomic replaces path with data so that readers see the old file
// or the new one, never a mix: temp file in the same directory, fsync,
// rename, fsync of the directory. Unchanged content is not rewritten; the
// result says whether the file changed.
func WriteFileAtomic(path string, data []byte, uid, gid int, mode os.FileMode) (bool, error) {
	return writeFileAtomic(path, data, uid, gid, mode, nil)
}

// writeFileAtomic is WriteFileAtomic with a check of the written
// candidate before it takes path's place; a refused candidate is removed
// and path left as it was.
func writeFileAtomic(path string, data []byte, uid, gid int, mode os.FileMode, check func(candidate string) error) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Lstat(path); err == nil && st.Mode().Perm() == mode && st.Mode().IsRegular() {
			// Same content and mode: unchanged only if the owner is too (a
			// user made again gets a new gid).
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == uid && int(sys.Gid) == gid {
				return false, nil
			}
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	if err := f.Chown(uid, gid); err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return false, err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("procmgr: write %s: %w", path, err)
	}
	ok = true
	return true, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("procmgr: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("procmgr: sync %s: %w", dir, err)
	}
	return nil
}

func symlinkAtomic(target, path string) (bool, error) {
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return false, nil
	}
	tmp := path + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("procmgr: link %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("procmgr: link %s: %w", path, err)
	}
	return true, syncDir(filepath.Dir(path))
}

// InstalledPHP lists the PHP versions with a php-fpm binary on this host.
func InstalledPHP() []PHPVersion {
	matches, _ := filepath.Glob("/usr/sbin/php-fpm[0-9].[0-9]")
	var out []PHPVersion
	for _, m := range matches {
		v := PHPVersion(strings.TrimPrefix(m, "/usr/sbin/php-fpm"))
		if phpVersionRe.MatchString(string(v)) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
