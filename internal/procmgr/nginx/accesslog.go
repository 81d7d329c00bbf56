package nginx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ikabud/panel/internal/procmgr"
)

// The sites' access logs: one file per site in Options.AccessLogDir,
// written by nginx, rotated by the panel (the file past its size renamed
// to <file>.1, the one before that dropped, and nginx reloaded, which
// opens the logs anew), read back for the instance's people, removed with
// a purge.

// siteOf is the site of spec as this Manager serves it.
func (m *Manager) siteOf(spec procmgr.Spec) Site {
	s := SiteOf(m.opt.Layout, spec)
	s.AccessLog = m.AccessLogPath(spec.ID)
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
// older one goes) and reloads nginx once if it renamed any. It returns the
// instances whose logs it rotated.
func (m *Manager) RotateLogs(ctx context.Context, limit int64) ([]procmgr.InstanceID, error) {
	if m.opt.AccessLogDir == "" {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var rotated []procmgr.InstanceID
	for id := range m.sites {
		p := m.AccessLogPath(id)
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() <= limit {
			continue
		}
		if err := os.Rename(p, p+".1"); err != nil {
			return rotated, err
		}
		rotated = append(rotated, id)
	}
	if len(rotated) == 0 {
		return nil, nil
	}
	// Until the reload nginx writes on into the renamed file: nothing is
	// lost, and the next lines go to a new one.
	return rotated, m.opt.Runner.Reload(ctx)
}

// AccessLog returns the last n lines of id's access log (with the
// rotated file before it when the current one holds fewer).
func (m *Manager) AccessLog(id procmgr.InstanceID, n int) ([]string, error) {
	p := m.AccessLogPath(id)
	if p == "" || n <= 0 {
		return nil, nil
	}
	var lines []string
	for _, f := range []string{p, p + ".1"} {
		data, err := readTail(f, 256<<10)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var got []string
		for _, l := range bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n")) {
			if len(l) > 0 {
				got = append(got, string(l))
			}
		}
		lines = append(got, lines...)
		if len(lines) >= n {
			break
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// readTail reads at most the last limit bytes of path, from a line start.
func readTail(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-limit, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return buf, nil
}

// RemoveLogs deletes id's access logs (a purge).
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
