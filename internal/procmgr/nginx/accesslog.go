package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/ikabud/panel/internal/procmgr"
)

// The sites' access logs: one file per site in Options.AccessLogDir,
// written by nginx's workers (the directory is theirs, 0700: no tenant can
// read it), rotated by the panel (the file past its size renamed to
// <file>.1, the one before that dropped; nginx's workers look the name up
// again within 10 s and go on in a new file, so no reload is needed and no
// line is lost), read back for the instance's people, and removed with a
// purge or before an instance of the same id is made.

// prepareAccessLogDir makes dir, nginx's workers' (web user's) alone.
func prepareAccessLogDir(dir, webUser string) error {
	u, err := user.Lookup(webUser)
	if err != nil {
		return fmt.Errorf("nginx: the web server's user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("nginx: %w", err)
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("nginx: %s is not a directory", dir)
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	return nil
}

// siteOf is the site of spec as this Manager serves it.
func (m *Manager) siteOf(spec procmgr.Spec) Site {
	s := SiteOf(m.opt.Layout, spec)
	s.AccessLogDir = m.opt.AccessLogDir
	return s
}

// AccessLogPath is the file of id's access log ("": no access logs).
func (m *Manager) AccessLogPath(id procmgr.InstanceID) string {
	if m.opt.AccessLogDir == "" {
		return ""
	}
	return filepath.Join(m.opt.AccessLogDir, string(id)+".access.log")
}

// RotateLogs renames every access log larger than limit to <file>.1 (the
// older one goes). It goes on past a log it cannot rename, and returns the
// instances whose logs it rotated with the errors of the others.
func (m *Manager) RotateLogs(limit int64) ([]procmgr.InstanceID, error) {
	if m.opt.AccessLogDir == "" {
		return nil, nil
	}
	m.mu.Lock()
	ids := make([]procmgr.InstanceID, 0, len(m.sites))
	for id := range m.sites {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var rotated []procmgr.InstanceID
	var errs []error
	for _, id := range ids {
		p := m.AccessLogPath(id)
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() <= limit {
			continue
		}
		if err := os.Rename(p, p+".1"); err != nil {
			errs = append(errs, err)
			continue
		}
		rotated = append(rotated, id)
	}
	return rotated, errors.Join(errs...)
}

// Reading a log reads at most this much of each of its two files.
const (
	bytesPerLine = 1 << 10
	minTailRead  = 64 << 10
	maxTailRead  = 8 << 20
)

// AccessLog returns the last n lines of id's access log, oldest first:
// the current file's, and the rotated file's before them when the current
// one was read whole and holds fewer. At most 8 MiB of each is read.
func (m *Manager) AccessLog(id procmgr.InstanceID, n int) ([]string, error) {
	p := m.AccessLogPath(id)
	if p == "" || n <= 0 {
		return nil, nil
	}
	limit := min(max(int64(n)*bytesPerLine, minTailRead), maxTailRead)
	var lines []string
	for _, f := range []string{p, p + ".1"} {
		data, whole, err := readTail(f, limit)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var got []string
		for _, l := range bytes.Split(data, []byte("\n")) {
			if len(l) > 0 {
				got = append(got, string(l))
			}
		}
		lines = append(got, lines...)
		// A file read from its middle: lines before what was read are
		// missing, so an older file's lines would not follow on.
		if len(lines) >= n || !whole {
			break
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// readTail reads at most the last limit bytes of path, from the start of
// a line; whole says it read the file from its start.
func readTail(path string, limit int64) (data []byte, whole bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("nginx: %s is not a regular file", path)
	}
	off := max(st.Size()-limit, 0)
	// One byte before the window, to know whether it starts a line.
	from := max(off-1, 0)
	buf := make([]byte, st.Size()-from)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	buf = buf[:n]
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		} else {
			buf = nil
		}
	}
	return buf, off == 0, nil
}

// RemoveLogs deletes id's access logs.
func (m *Manager) RemoveLogs(id procmgr.InstanceID) error {
	p := m.AccessLogPath(id)
	if p == "" {
		return nil
	}
	var errs []error
	for _, f := range []string{p, p + ".1"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
