package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// The sites' access log: one file, access.log in Options.AccessLogDir
// (root's alone, 0700), every line starting with the instance's id and the
// time; nginx's master opens it. The panel rotates it (past its size renamed
// to access.log.1, the one before dropped, and nginx reloaded, which opens
// it anew) and reads an instance's lines back for its people, only those
// written since the instance was made (an earlier instance of the same id
// was another customer's). A removed instance's lines leave with the
// rotations.

// prepareAccessLogDir makes dir, root's alone.
func prepareAccessLogDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("nginx: %w", err)
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("nginx: %s is not a directory", dir)
	}
	if err := os.Chown(dir, 0, 0); err != nil {
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
	s.AccessLog = m.AccessLogPath()
	return s
}

// AccessLogPath is the sites' access log ("": none).
func (m *Manager) AccessLogPath() string {
	if m.opt.AccessLogDir == "" {
		return ""
	}
	return filepath.Join(m.opt.AccessLogDir, "access.log")
}

// RotateLogs renames the access log to access.log.1 (the older one goes)
// when it is larger than limit, and reloads nginx, which opens it anew. A
// reload that failed is tried again at the next call. It says whether it
// rotated.
func (m *Manager) RotateLogs(ctx context.Context, limit int64) (bool, error) {
	p := m.AccessLogPath()
	if p == "" {
		return false, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rotated := false
	if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		if err := os.Rename(p, p+".1"); err != nil {
			return false, fmt.Errorf("nginx: rotate the access log: %w", err)
		}
		rotated, m.reopen = true, true
	}
	if !m.reopen {
		return rotated, nil
	}
	// Until the reload nginx writes on into the renamed file: nothing is
	// lost, and the next lines go to a new one.
	if err := m.opt.Runner.Reload(ctx); err != nil {
		return rotated, fmt.Errorf("nginx: reopen the access log: %w", err)
	}
	m.reopen = false
	return rotated, nil
}

// Reading the log reads at most this much of each of its two files.
const maxTailRead = 16 << 20

// AccessLog returns the last n requests to id's site made since since,
// oldest first, without the id and time that start each line: the current
// file's, and the rotated file's before them when the current one was read
// whole and holds fewer. At most the last 16 MiB of each file are read: a
// site with no request among them has none to show.
func (m *Manager) AccessLog(id procmgr.InstanceID, since time.Time, n int) ([]string, error) {
	p := m.AccessLogPath()
	if p == "" || n <= 0 {
		return nil, nil
	}
	prefix := []byte(string(id) + " ")
	var lines []string
	for _, f := range []string{p, p + ".1"} {
		data, whole, err := readTail(f, maxTailRead)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var got []string
		for _, l := range bytes.Split(data, []byte("\n")) {
			rest, ok := bytes.CutPrefix(l, prefix)
			if !ok {
				continue
			}
			at, line, ok := bytes.Cut(rest, []byte(" "))
			if !ok {
				continue
			}
			secs, err := strconv.ParseFloat(string(at), 64)
			if err != nil || time.UnixMilli(int64(secs*1000)).Before(since) {
				continue
			}
			got = append(got, string(line))
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
