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
	"slices"
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

// Reading the log reads at most this much of each of its two files, from
// the end back, a chunk at a time, and stops once it has the lines asked
// for: the requests of a busy site are found in its last few chunks.
const (
	maxTailRead = 16 << 20
	tailChunk   = 64 << 10
)

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
		var got []string // newest first
		whole, err := scanBack(f, maxTailRead, func(l []byte) bool {
			if text, ok := requestOf(l, prefix, since); ok {
				got = append(got, text)
			}
			return len(lines)+len(got) < n
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		slices.Reverse(got)
		lines = append(got, lines...)
		// A file read from its middle: lines before what was read are
		// missing, so an older file's lines would not follow on.
		if len(lines) >= n || !whole {
			break
		}
	}
	return lines, nil
}

// requestOf is the request a log line records, if the line is prefix's
// (the instance's id and a space) and from since on.
func requestOf(l, prefix []byte, since time.Time) (string, bool) {
	rest, ok := bytes.CutPrefix(l, prefix)
	if !ok {
		return "", false
	}
	at, line, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return "", false
	}
	secs, err := strconv.ParseFloat(string(at), 64)
	if err != nil || time.UnixMilli(int64(secs*1000)).Before(since) {
		return "", false
	}
	return string(line), true
}

// scanBack gives keep path's lines from the last back, reading at most
// the last limit bytes, until keep says no more. whole says the scan
// reached the file's first line.
func scanBack(path string, limit int64, keep func(line []byte) bool) (whole bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, fmt.Errorf("nginx: %s is not a regular file", path)
	}
	pos, stop := st.Size(), max(st.Size()-limit, 0)
	var head []byte // the start of the file's part read so far: a line's end, or a whole line at pos
	for pos > stop {
		size := min(int64(tailChunk), pos-stop)
		pos -= size
		buf := make([]byte, size, size+int64(len(head)))
		if _, err := f.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		data := append(buf, head...)
		end := len(data)
		for {
			i := bytes.LastIndexByte(data[:end], '\n')
			if i < 0 {
				break
			}
			if line := data[i+1 : end]; len(line) > 0 && !keep(line) {
				return false, nil
			}
			end = i
		}
		head = data[:end]
	}
	// What is left is a whole line if the file starts there or a line
	// ended just before it.
	if pos > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], pos-1); err != nil || b[0] != '\n' {
			return false, nil
		}
	}
	if len(head) > 0 {
		keep(head)
	}
	return pos == 0, nil
}
