package fcgi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fake server below decodes requests with its own code, independent of
// the client's encoder, so that a bug in one is not mirrored by the other.

type fakeRecord struct {
	typ     byte
	id      uint16
	pad     int
	content []byte
}

type fakeRequest struct {
	begin        fakeRecord
	paramRecords [][]byte
	params       map[string]string
	stdin        []byte
	records      []fakeRecord
}

func fakeReadRecord(r io.Reader) (fakeRecord, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fakeRecord{}, err
	}
	if h[0] != 1 {
		return fakeRecord{}, fmt.Errorf("version %d", h[0])
	}
	n := int(binary.BigEndian.Uint16(h[4:]))
	pad := int(h[6])
	buf := make([]byte, n+pad)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fakeRecord{}, err
	}
	return fakeRecord{typ: h[1], id: binary.BigEndian.Uint16(h[2:]), pad: pad, content: buf[:n]}, nil
}

// fakeReadRequest reads one request, up to and including the empty STDIN.
func fakeReadRequest(r io.Reader) (*fakeRequest, error) {
	req := &fakeRequest{}
	var paramStream []byte
	paramsDone := false
	for {
		rec, err := fakeReadRecord(r)
		if err != nil {
			return nil, err
		}
		req.records = append(req.records, rec)
		switch rec.typ {
		case typeBeginRequest:
			req.begin = rec
		case typeParams:
			if len(rec.content) == 0 {
				paramsDone = true
				p, err := fakeDecodePairs(paramStream)
				if err != nil {
					return nil, err
				}
				req.params = p
				continue
			}
			if paramsDone {
				return nil, errors.New("PARAMS after the empty PARAMS")
			}
			req.paramRecords = append(req.paramRecords, rec.content)
			paramStream = append(paramStream, rec.content...)
		case typeStdin:
			if len(rec.content) == 0 {
				return req, nil
			}
			req.stdin = append(req.stdin, rec.content...)
		default:
			return nil, fmt.Errorf("unexpected record type %d", rec.typ)
		}
	}
}

func fakeDecodeLen(b []byte) (int, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errors.New("short length")
	}
	if b[0]&0x80 == 0 {
		return int(b[0]), b[1:], nil
	}
	if len(b) < 4 {
		return 0, nil, errors.New("short 4-byte length")
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), b[4:], nil
}

func fakeDecodePairs(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for len(b) > 0 {
		nl, rest, err := fakeDecodeLen(b)
		if err != nil {
			return nil, err
		}
		vl, rest, err := fakeDecodeLen(rest)
		if err != nil {
			return nil, err
		}
		if len(rest) < nl+vl {
			return nil, fmt.Errorf("pair of %d+%d bytes, only %d left", nl, vl, len(rest))
		}
		out[string(rest[:nl])] = string(rest[nl : nl+vl])
		b = rest[nl+vl:]
	}
	return out, nil
}

func fakeWriteRecord(w io.Writer, typ byte, id uint16, content []byte) error {
	pad := (8 - len(content)%8) % 8
	h := [8]byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	_, err := w.Write(append(append(h[:], content...), make([]byte, pad)...))
	return err
}

func fakeWriteStdout(w io.Writer, chunks ...string) error {
	for _, c := range chunks {
		for first := true; first || len(c) > 0; first = false {
			n := min(len(c), 65535)
			if err := fakeWriteRecord(w, typeStdout, 1, []byte(c[:n])); err != nil {
				return err
			}
			c = c[n:]
		}
	}
	return fakeWriteRecord(w, typeStdout, 1, nil)
}

func fakeEndRequest(w io.Writer, appStatus uint32, protocolStatus byte) error {
	body := make([]byte, 8)
	binary.BigEndian.PutUint32(body, appStatus)
	body[4] = protocolStatus
	return fakeWriteRecord(w, typeEndRequest, 1, body)
}

// startFake serves handle on a Unix socket in a temporary directory and
// returns the socket path. Every connection is closed when the test ends.
func startFake(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	path := t.TempDir() + "/fcgi.sock"
	if len(path) >= 108 {
		t.Fatalf("socket path %q is %d bytes, Unix sockets allow 107", path, len(path))
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return path
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAppendPairLengthEncoding(t *testing.T) {
	long := strings.Repeat("n", 200)
	got := appendPair(nil, long, "v")
	want := append([]byte{0x80, 0, 0, 200, 1}, long+"v"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("200-byte name: got % x..., want % x...", got[:6], want[:6])
	}
	got = appendPair(nil, "n", strings.Repeat("v", 127))
	if got[0] != 1 || got[1] != 127 || len(got) != 2+1+127 {
		t.Fatalf("127-byte value must use the 1-byte length: % x", got[:4])
	}
	got = appendPair(nil, "n", strings.Repeat("v", 128))
	if !bytes.Equal(got[:6], []byte{1, 0x80, 0, 0, 128, 'n'}) {
		t.Fatalf("128-byte value must use the 4-byte length: % x", got[:6])
	}
	got = appendPair(nil, "n", strings.Repeat("v", 70000))
	if !bytes.Equal(got[:5], []byte{1, 0x80, 0x01, 0x11, 0x70}) {
		t.Fatalf("70000-byte value: % x", got[:5])
	}
}

func TestDoParamsEncoding(t *testing.T) {
	params := map[string]string{
		"SCRIPT_FILENAME":        "/srv/x/public/index.php",
		strings.Repeat("N", 200): "short value for a long name",
		"LONG_VALUE":             strings.Repeat("v", 300),
		strings.Repeat("B", 130): strings.Repeat("b", 5000),
		"EMPTY":                  "",
		"HUGE":                   strings.Repeat("h", 70000), // alone longer than a record
	}
	for i := range 100 { // 100 kB of pairs: several records
		params[fmt.Sprintf("FILL_%03d", i)] = strings.Repeat("f", 1000)
	}
	stdin := bytes.Repeat([]byte("0123456789"), 10000) // 100 kB: two STDIN records

	got := make(chan *fakeRequest, 1)
	path := startFake(t, func(c net.Conn) {
		req, err := fakeReadRequest(c)
		if err != nil {
			t.Errorf("fake: %v", err)
			return
		}
		got <- req
		_ = fakeWriteStdout(c, "Content-Type: text/plain\r\n\r\n", string(req.stdin))
		_ = fakeEndRequest(c, 0, 0)
	})

	resp, err := Do(testCtx(t), path, Request{Params: params, Stdin: stdin})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.Body, stdin) {
		t.Errorf("echoed stdin: %d bytes, want %d", len(resp.Body), len(stdin))
	}
	req := <-got
	if !maps.Equal(req.params, params) {
		t.Errorf("server decoded %d params, want %d (or values differ)", len(req.params), len(params))
	}
	if b := req.begin.content; len(b) != 8 || binary.BigEndian.Uint16(b) != roleResponder || b[2] != 0 {
		t.Errorf("BEGIN_REQUEST body % x, want role 1 (responder), flags 0 (no keep-conn)", b)
	}
	if req.records[0].typ != typeBeginRequest {
		t.Errorf("first record type %d, want BEGIN_REQUEST", req.records[0].typ)
	}
	for _, rec := range req.records {
		if rec.id != 1 {
			t.Errorf("record type %d has request id %d, want 1", rec.typ, rec.id)
		}
		if (len(rec.content)+rec.pad)%8 != 0 {
			t.Errorf("record type %d of %d bytes padded by %d: not 8-aligned", rec.typ, len(rec.content), rec.pad)
		}
	}
	if len(req.paramRecords) < 3 {
		t.Errorf("%d PARAMS records, want the pairs split over several", len(req.paramRecords))
	}
	// PHP-FPM parses each PARAMS record on its own: every record that does
	// not carry part of the oversize pair must hold whole pairs.
	for i, rec := range req.paramRecords {
		if len(rec) > 65535 {
			t.Errorf("PARAMS record %d has %d bytes", i, len(rec))
		}
		if bytes.Contains(rec, []byte("hhhhhhhh")) {
			continue
		}
		if _, err := fakeDecodePairs(rec); err != nil {
			t.Errorf("PARAMS record %d does not hold whole pairs: %v", i, err)
		}
	}
}

func TestDoMultiRecordStdout(t *testing.T) {
	path := startFake(t, func(c net.Conn) {
		if _, err := fakeReadRequest(c); err != nil {
			t.Errorf("fake: %v", err)
			return
		}
		// The header block itself is cut mid-line and mid-separator.
		_ = fakeWriteStdout(c, "X-Powered-By: PHP\r\nContent-Ty", "pe: text/html\r", "\n\r\nhel", "", "lo ", "world")
		_ = fakeEndRequest(c, 7, 0)
	})
	resp, err := Do(testCtx(t), path, Request{})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "hello world" {
		t.Errorf("body %q, want %q", resp.Body, "hello world")
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html" {
		t.Errorf("Content-Type %q", ct)
	}
	if pb := resp.Header.Get("X-Powered-By"); pb != "PHP" {
		t.Errorf("X-Powered-By %q", pb)
	}
	if resp.Status != 200 || resp.AppStatus != 7 {
		t.Errorf("status %d, app status %d; want 200, 7", resp.Status, resp.AppStatus)
	}
}

func TestDoStderr(t *testing.T) {
	big := strings.Repeat("e", MaxStderrSize+100)
	path := startFake(t, func(c net.Conn) {
		req, err := fakeReadRequest(c)
		if err != nil {
			t.Errorf("fake: %v", err)
			return
		}
		_ = fakeWriteRecord(c, typeStderr, 1, []byte("PHP Warning: "))
		_ = fakeWriteRecord(c, typeStdout, 1, []byte("Status: 500\r\n\r\n"))
		if req.params["BIG"] == "1" {
			_ = fakeWriteRecord(c, typeStderr, 1, []byte(big[:60000]))
			_ = fakeWriteRecord(c, typeStderr, 1, []byte(big[60000:]))
		} else {
			_ = fakeWriteRecord(c, typeStderr, 1, []byte("oops"))
		}
		_ = fakeWriteRecord(c, typeStderr, 1, nil)
		_ = fakeWriteStdout(c)
		_ = fakeEndRequest(c, 0, 0)
	})

	resp, err := Do(testCtx(t), path, Request{})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Stderr) != "PHP Warning: oops" || resp.StderrTruncated {
		t.Errorf("stderr %q (truncated %v), want %q", resp.Stderr, resp.StderrTruncated, "PHP Warning: oops")
	}
	if resp.Status != 500 || len(resp.Body) != 0 {
		t.Errorf("status %d body %q, want 500 and empty", resp.Status, resp.Body)
	}

	resp, err = Do(testCtx(t), path, Request{Params: map[string]string{"BIG": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Stderr) != MaxStderrSize || !resp.StderrTruncated {
		t.Errorf("big stderr: kept %d bytes (truncated %v), want %d and true", len(resp.Stderr), resp.StderrTruncated, MaxStderrSize)
	}
	if !strings.HasPrefix(string(resp.Stderr), "PHP Warning: eee") {
		t.Errorf("big stderr must keep the first bytes, got %q...", resp.Stderr[:20])
	}
}

func TestDoStatusHeader(t *testing.T) {
	cases := []struct {
		stdout     string
		status     int
		body       string
		header     string // "Name: value" expected in Header, optional
		malformed  bool
		statusGone bool
	}{
		{stdout: "Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\nFile not found.\n", status: 404, body: "File not found.\n", header: "Content-Type: text/html"},
		{stdout: "Content-type: text/plain\r\n\r\npong", status: 200, body: "pong", header: "Content-Type: text/plain"},
		{stdout: "status: 503\r\n\r\n", status: 503},
		{stdout: "Status: 404 Not Found\n\nbare LF", status: 404, body: "bare LF"},
		{stdout: "Location: /wp-admin/\r\n\r\n", status: 302, header: "Location: /wp-admin/"},
		{stdout: "Status: 301 Moved Permanently\r\nLocation: /x\r\n\r\n", status: 301, header: "Location: /x"},
		{stdout: "\r\nbody without headers", status: 200, body: "body without headers"},
		{stdout: "Content-Type: text/plain\r\n\r\nbody\r\n\r\nwith a blank line", status: 200, body: "body\r\n\r\nwith a blank line"},
		{stdout: "Status: abc\r\n\r\n", malformed: true},
		{stdout: "Status: 4040 Huge\r\n\r\n", malformed: true},
		{stdout: "Status: 42\r\n\r\n", malformed: true},
		{stdout: "no colon here\r\n\r\n", malformed: true},
		{stdout: "Content-Type: text/plain\r\nno blank line", malformed: true},
		{stdout: "", malformed: true},
	}
	for _, tc := range cases {
		path := startFake(t, func(c net.Conn) {
			if _, err := fakeReadRequest(c); err != nil {
				t.Errorf("fake: %v", err)
				return
			}
			_ = fakeWriteStdout(c, tc.stdout)
			_ = fakeEndRequest(c, 0, 0)
		})
		resp, err := Do(testCtx(t), path, Request{})
		if tc.malformed {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%q: err %v, want ErrMalformed", tc.stdout, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.stdout, err)
			continue
		}
		if resp.Status != tc.status || string(resp.Body) != tc.body {
			t.Errorf("%q: status %d body %q, want %d %q", tc.stdout, resp.Status, resp.Body, tc.status, tc.body)
		}
		if tc.header != "" {
			name, value, _ := strings.Cut(tc.header, ": ")
			if got := resp.Header.Get(name); got != value {
				t.Errorf("%q: header %s = %q, want %q", tc.stdout, name, got, value)
			}
		}
		if _, ok := resp.Header["Status"]; ok {
			t.Errorf("%q: Status left in Header", tc.stdout)
		}
	}
}

func TestDoOversizeBody(t *testing.T) {
	path := startFake(t, func(c net.Conn) {
		req, err := fakeReadRequest(c)
		if err != nil {
			t.Errorf("fake: %v", err)
			return
		}
		var size int
		fmt.Sscan(req.params["SIZE"], &size)
		_ = fakeWriteRecord(c, typeStdout, 1, []byte("Content-Type: application/octet-stream\r\n\r\n"))
		chunk := bytes.Repeat([]byte("x"), 65535)
		for size > 0 {
			n := min(size, len(chunk))
			if fakeWriteRecord(c, typeStdout, 1, chunk[:n]) != nil {
				return // the client gave up, as it should
			}
			size -= n
		}
		_ = fakeWriteStdout(c)
		_ = fakeEndRequest(c, 0, 0)
	})
	do := func(size int) (*Response, error) {
		return Do(testCtx(t), path, Request{Params: map[string]string{"SIZE": fmt.Sprint(size)}})
	}

	resp, err := do(MaxBodySize)
	if err != nil {
		t.Fatalf("body of exactly MaxBodySize: %v", err)
	}
	if len(resp.Body) != MaxBodySize {
		t.Errorf("body %d bytes, want %d", len(resp.Body), MaxBodySize)
	}
	_, err = do(MaxBodySize + 1)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("body of MaxBodySize+1: err %v, want ErrTooLarge", err)
	}
	// A server that streams without end is cut off while reading, not after.
	start := time.Now()
	_, err = do(64 << 20)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("64 MiB body: err %v, want ErrTooLarge", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "fcgi: ") {
		t.Errorf("error %q lacks the fcgi: prefix", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("64 MiB body took %v to reject", d)
	}
}

// silentServer accepts connections and reads them without ever answering.
func silentServer(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func TestDoTimeout(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		path := startFake(t, silentServer)
		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Do(ctx, path, Request{})
		d := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want context.DeadlineExceeded", err)
		}
		if d < 140*time.Millisecond || d > time.Second {
			t.Errorf("gave up after %v, want about 150ms", d)
		}
		t.Logf("error: %v", err)
	})
	t.Run("cancel without deadline", func(t *testing.T) {
		t.Parallel()
		path := startFake(t, silentServer)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := Do(ctx, path, Request{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("cancel took effect after %v", d)
		}
	})
	t.Run("default timeout", func(t *testing.T) {
		t.Parallel()
		path := startFake(t, silentServer)
		start := time.Now()
		_, err := Do(t.Context(), path, Request{}) // no deadline: DefaultTimeout applies
		d := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want context.DeadlineExceeded", err)
		}
		if d < DefaultTimeout-50*time.Millisecond || d > DefaultTimeout+time.Second {
			t.Errorf("gave up after %v, want about %v", d, DefaultTimeout)
		}
	})
}

func TestDoMalformedRecord(t *testing.T) {
	end := func(ps byte) []byte {
		b := make([]byte, 16)
		copy(b, []byte{1, typeEndRequest, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, ps})
		return b
	}
	cases := []struct {
		name string
		raw  []byte // written after a valid STDOUT header block
		want error  // errors.Is target
		msg  string // substring of the message
	}{
		{"bad version", []byte{2, typeStdout, 0, 1, 0, 0, 0, 0}, ErrMalformed, "version 2"},
		{"other request id", []byte{1, typeStdout, 0, 2, 0, 0, 0, 0}, ErrMalformed, "request id 2"},
		{"management record", []byte{1, typeUnknownType, 0, 0, 0, 8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed, "request id 0"},
		{"unknown type", []byte{1, 42, 0, 1, 0, 0, 0, 0}, ErrMalformed, "record type 42"},
		{"unexpected type", []byte{1, typeParams, 0, 1, 0, 0, 0, 0}, ErrMalformed, "PARAMS"},
		{"short END_REQUEST", []byte{1, typeEndRequest, 0, 1, 0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed, "END_REQUEST body of 4 bytes"},
		{"truncated header", []byte{1, typeStdout, 0}, io.ErrUnexpectedEOF, "record header"},
		{"truncated content", []byte{1, typeStdout, 0, 1, 0, 100, 0, 0, 'a', 'b'}, io.ErrUnexpectedEOF, "record content"},
		{"no END_REQUEST", nil, io.ErrUnexpectedEOF, "before END_REQUEST"},
		{"overloaded", end(statusOverloaded), ErrRejected, "overloaded"},
		{"unknown role", end(statusUnknownRole), ErrRejected, "role"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := startFake(t, func(c net.Conn) {
				if _, err := fakeReadRequest(c); err != nil {
					t.Errorf("fake: %v", err)
					return
				}
				_ = fakeWriteRecord(c, typeStdout, 1, []byte("Content-Type: text/plain\r\n\r\nok"))
				_, _ = c.Write(tc.raw)
			})
			_, err := Do(testCtx(t), path, Request{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "fcgi: ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q: want prefix \"fcgi: \" and %q", err, tc.msg)
			}
		})
	}
}

func TestDoDialErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Do(testCtx(t), dir+"/missing.sock", Request{})
	if !errors.Is(err, syscall.ENOENT) || !strings.HasPrefix(err.Error(), "fcgi: dial") {
		t.Errorf("missing socket: err %v, want fcgi: dial ... ENOENT", err)
	}

	// A socket file left behind by a dead server (as after kill -9).
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/dead.sock", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, err = Do(testCtx(t), dir+"/dead.sock", Request{})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dead socket: err %v, want ECONNREFUSED", err)
	}
}

func TestDoRejectsBadParams(t *testing.T) {
	_, err := Do(testCtx(t), "/nonexistent", Request{Params: map[string]string{"": "x"}})
	if err == nil || !strings.Contains(err.Error(), "empty parameter name") {
		t.Errorf("err %v, want empty parameter name", err)
	}
}

func TestDoChecksThePeer(t *testing.T) {
	path := startFake(t, func(c net.Conn) {
		if _, err := fakeReadRequest(c); err != nil {
			return
		}
		_ = fakeWriteStdout(c, "Content-Type: text/plain\r\n\r\n", "pong")
		_ = fakeEndRequest(c, 0, 0)
	})
	ctx := context.Background()
	// The fake listens in this process.
	if _, err := Do(ctx, path, Request{PeerPID: os.Getpid()}); err != nil {
		t.Errorf("the expected peer: %v", err)
	}
	if _, err := Do(ctx, path, Request{PeerPID: os.Getpid() + 1}); !errors.Is(err, ErrWrongPeer) {
		t.Errorf("another peer: %v, want ErrWrongPeer", err)
	}
}
