// Package fcgi is a minimal FastCGI client: one responder request per
// connection over a Unix socket, enough to probe a PHP-FPM pool (ping and
// status page) without a web server in front of it.
//
// It speaks only what a health check needs: no multiplexing, no kept
// connections, no management records. Every read is bounded (see the Max
// constants) and every call has a deadline, because the server on the other
// side belongs to a tenant and may be slow, stuck or hostile.
package fcgi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits of one call. A response over MaxHeaderSize+MaxBodySize bytes of
// STDOUT fails with ErrTooLarge; STDERR beyond MaxStderrSize is dropped (the
// first bytes are usually the ones that explain the problem).
const (
	// DefaultTimeout bounds a call whose ctx has no deadline.
	DefaultTimeout = 2 * time.Second
	// MaxBodySize is the largest response body Do accepts.
	MaxBodySize = 1 << 20
	// MaxHeaderSize is the largest CGI header block Do accepts.
	MaxHeaderSize = 64 << 10
	// MaxStderrSize is how much of the server's STDERR stream Do keeps.
	MaxStderrSize = 64 << 10
)

// Errors that callers may branch on; the returned errors wrap them.
var (
	// ErrMalformed means the server broke the protocol: a bad record header,
	// an unexpected record type, or an unparsable CGI header block.
	ErrMalformed = errors.New("malformed response")
	// ErrTooLarge means the response exceeded MaxHeaderSize or MaxBodySize.
	ErrTooLarge = errors.New("response too large")
	// ErrRejected means the server ended the request with a protocol status
	// other than "request complete" (overloaded, cannot multiplex, unknown role).
	ErrRejected = errors.New("request rejected")
)

// Request is one FastCGI responder request.
type Request struct {
	// Params are the CGI variables (SCRIPT_FILENAME, REQUEST_METHOD, ...).
	// They are sent sorted by name, so that a request is byte-for-byte
	// reproducible.
	Params map[string]string
	// Stdin is the request body; nil for none.
	Stdin []byte
	// PeerPID, when not zero, is the process that must be listening on the
	// socket (SO_PEERCRED of the connection names the process that called
	// listen). A socket path in a directory someone else can write may
	// lead anywhere; this makes sure it leads to the expected server.
	PeerPID int
}

// Response is the answer to a Request.
type Response struct {
	// Status is the HTTP status from the "Status" CGI header; 200 when the
	// header is absent, 302 when only "Location" is set (RFC 3875 6.2.3).
	Status int
	// Header holds the CGI headers other than Status, keys canonicalised.
	Header textproto.MIMEHeader
	// Body is the STDOUT stream after the header block.
	Body []byte
	// Stderr is the first MaxStderrSize bytes of the STDERR stream.
	Stderr []byte
	// StderrTruncated reports that STDERR had more than MaxStderrSize bytes.
	StderrTruncated bool
	// AppStatus is the application's exit status from END_REQUEST.
	AppStatus uint32
}

// Protocol constants (FastCGI specification 1.0, section 8).
const (
	version1 = 1

	typeBeginRequest = 1
	typeAbortRequest = 2
	typeEndRequest   = 3
	typeParams       = 4
	typeStdin        = 5
	typeStdout       = 6
	typeStderr       = 7
	typeData         = 8
	typeGetValues    = 9
	typeGetValuesRes = 10
	typeUnknownType  = 11

	roleResponder = 1

	statusRequestComplete = 0
	statusCantMpxConn     = 1
	statusOverloaded      = 2
	statusUnknownRole     = 3

	headerLen  = 8
	maxContent = 65535
	// requestID is fixed: one request per connection, and 0 is reserved for
	// management records.
	requestID = 1
	// maxNameValueLen is the largest length the 4-byte encoding can carry.
	maxNameValueLen = 1<<31 - 1
)

// Do sends req to the FastCGI responder listening on socketPath and returns
// its complete response.
//
// The whole call (dial, write, read) is bounded by ctx's deadline, or by
// DefaultTimeout when ctx has none; cancelling ctx aborts it. When it ends
// because of ctx, the error wraps ctx.Err(), so errors.Is(err,
// context.DeadlineExceeded) holds for a timeout.
//
// The request is written in full before the response is read. That is what
// PHP-FPM expects (it reads the whole request first); a server that answers
// before reading a large Stdin would stall until the deadline.
func Do(ctx context.Context, socketPath string, req Request) (*Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()

	msg, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, ctxError(ctx, "dial", err)
	}
	defer conn.Close()
	if req.PeerPID != 0 {
		if err := checkPeer(conn, req.PeerPID); err != nil {
			return nil, err
		}
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("fcgi: set deadline: %w", err)
	}
	// A deadline alone misses cancellation; moving the deadline into the
	// past unblocks any pending read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(msg); err != nil {
		return nil, ctxError(ctx, "write request", err)
	}
	resp, err := readResponse(conn)
	if err != nil {
		return nil, ctxError(ctx, "read response", err)
	}
	return resp, nil
}

// ErrWrongPeer means the socket is served by another process than the one
// expected.
var ErrWrongPeer = errors.New("fcgi: socket served by an unexpected process")

func checkPeer(conn net.Conn, want int) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%w: not a unix socket", ErrWrongPeer)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("fcgi: peer: %w", err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("fcgi: peer: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("fcgi: peer: %w", cerr)
	}
	if int(cred.Pid) != want {
		return fmt.Errorf("%w: pid %d, want %d", ErrWrongPeer, cred.Pid, want)
	}
	return nil
}

// ctxError prefixes err and, when ctx has ended, wraps ctx.Err() as well, so
// callers can tell a timeout from a broken server.
func ctxError(ctx context.Context, op string, err error) error {
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrRejected) {
		return fmt.Errorf("fcgi: %s: %w", op, err)
	}
	cerr := ctx.Err()
	if d, _ := ctx.Deadline(); cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		// The socket deadline and ctx's timer fire at the same instant;
		// the socket may report first, before ctx.Err() is set.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("fcgi: %s: %w: %w", op, cerr, err)
	}
	return fmt.Errorf("fcgi: %s: %w", op, err)
}

// encodeRequest renders the whole request: BEGIN_REQUEST, PARAMS, the empty
// PARAMS that ends them, STDIN and the empty STDIN that ends it.
func encodeRequest(req Request) ([]byte, error) {
	var buf bytes.Buffer
	// role (2 bytes), flags (1; keepConn=0 so the server closes), reserved (5)
	begin := [8]byte{0, roleResponder}
	writeRecord(&buf, typeBeginRequest, begin[:])

	if err := writeParams(&buf, req.Params); err != nil {
		return nil, err
	}
	writeRecord(&buf, typeParams, nil)

	writeStream(&buf, typeStdin, req.Stdin)
	writeRecord(&buf, typeStdin, nil)
	return buf.Bytes(), nil
}

// writeParams encodes the name-value pairs into PARAMS records of at most
// maxContent bytes. A pair is never split across records unless it alone is
// longer than a record: the specification allows splitting anywhere, but
// PHP-FPM parses each PARAMS record on its own and would drop a pair cut in
// two.
func writeParams(buf *bytes.Buffer, params map[string]string) error {
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)

	rec := make([]byte, 0, 512)
	for _, name := range names {
		value := params[name]
		if name == "" {
			return errors.New("fcgi: encode params: empty parameter name")
		}
		if len(name) > maxNameValueLen || len(value) > maxNameValueLen {
			return fmt.Errorf("fcgi: encode params: parameter %.64q is longer than %d bytes", name, maxNameValueLen)
		}
		pair := appendPair(nil, name, value)
		if len(rec)+len(pair) > maxContent && len(rec) > 0 {
			writeRecord(buf, typeParams, rec)
			rec = rec[:0]
		}
		if len(pair) > maxContent {
			writeStream(buf, typeParams, pair)
			continue
		}
		rec = append(rec, pair...)
	}
	if len(rec) > 0 {
		writeRecord(buf, typeParams, rec)
	}
	return nil
}

// appendPair appends one name-value pair: each length in 1 byte when below
// 128, else in 4 bytes with the top bit set.
func appendPair(b []byte, name, value string) []byte {
	b = appendLen(b, len(name))
	b = appendLen(b, len(value))
	b = append(b, name...)
	return append(b, value...)
}

func appendLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// writeStream writes data as consecutive records of one stream type.
func writeStream(buf *bytes.Buffer, typ byte, data []byte) {
	for len(data) > 0 {
		n := min(len(data), maxContent)
		writeRecord(buf, typ, data[:n])
		data = data[n:]
	}
}

// writeRecord writes one record, padded to a multiple of 8 bytes as the
// specification recommends.
func writeRecord(buf *bytes.Buffer, typ byte, content []byte) {
	pad := -len(content) & 7
	h := [headerLen]byte{version1, typ, 0, 0, 0, 0, byte(pad), 0}
	binary.BigEndian.PutUint16(h[2:], requestID)
	binary.BigEndian.PutUint16(h[4:], uint16(len(content)))
	buf.Write(h[:])
	buf.Write(content)
	var zeros [8]byte
	buf.Write(zeros[:pad])
}

// readResponse reads records until END_REQUEST and assembles the response.
func readResponse(r io.Reader) (*Response, error) {
	var (
		h       [headerLen]byte
		content = make([]byte, 0, 4096)
		stdout  []byte
		resp    = &Response{}
	)
	const maxStdout = MaxHeaderSize + MaxBodySize
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("connection closed before END_REQUEST: %w", io.ErrUnexpectedEOF)
			}
			return nil, fmt.Errorf("record header: %w", err)
		}
		typ := h[1]
		if h[0] != version1 {
			return nil, fmt.Errorf("%w: record version %d, want %d", ErrMalformed, h[0], version1)
		}
		if id := binary.BigEndian.Uint16(h[2:]); id != requestID {
			return nil, fmt.Errorf("%w: record type %d for request id %d, want %d", ErrMalformed, typ, id, requestID)
		}
		n := int(binary.BigEndian.Uint16(h[4:]))
		pad := int(h[6])
		content = slices.Grow(content[:0], n+pad)[:n+pad]
		if _, err := io.ReadFull(r, content); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("record content (type %d, %d bytes): %w", typ, n+pad, err)
		}
		content = content[:n]

		switch typ {
		case typeStdout:
			if len(stdout)+n > maxStdout {
				return nil, fmt.Errorf("%w: STDOUT exceeds %d bytes (body limit %d)", ErrTooLarge, maxStdout, MaxBodySize)
			}
			stdout = append(stdout, content...)
		case typeStderr:
			keep := min(n, MaxStderrSize-len(resp.Stderr))
			resp.Stderr = append(resp.Stderr, content[:keep]...)
			if keep < n {
				resp.StderrTruncated = true
			}
		case typeEndRequest:
			if n != 8 {
				return nil, fmt.Errorf("%w: END_REQUEST body of %d bytes, want 8", ErrMalformed, n)
			}
			resp.AppStatus = binary.BigEndian.Uint32(content[0:4])
			if ps := content[4]; ps != statusRequestComplete {
				return nil, fmt.Errorf("%w: %s (app status %d)", ErrRejected, protocolStatusName(ps), resp.AppStatus)
			}
			if err := parseStdout(resp, stdout); err != nil {
				return nil, err
			}
			return resp, nil
		default:
			return nil, fmt.Errorf("%w: unexpected record type %s", ErrMalformed, recordTypeName(typ))
		}
	}
}

// parseStdout splits STDOUT into the CGI header block and the body.
func parseStdout(resp *Response, stdout []byte) error {
	if len(stdout) == 0 {
		return fmt.Errorf("%w: empty STDOUT, no CGI headers", ErrMalformed)
	}
	end, sep := headerEnd(stdout)
	if end < 0 {
		if len(stdout) > MaxHeaderSize {
			return fmt.Errorf("%w: no end of CGI headers within %d bytes", ErrTooLarge, MaxHeaderSize)
		}
		return fmt.Errorf("%w: no end of CGI headers (blank line) in %d bytes of STDOUT", ErrMalformed, len(stdout))
	}
	if end > MaxHeaderSize {
		return fmt.Errorf("%w: CGI headers of %d bytes exceed %d", ErrTooLarge, end, MaxHeaderSize)
	}
	body := stdout[end+sep:]
	if len(body) > MaxBodySize {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrTooLarge, len(body), MaxBodySize)
	}

	header := make(textproto.MIMEHeader)
	for line := range strings.Lines(string(stdout[:end])) {
		line = strings.TrimRight(line, "\r\n")
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("%w: CGI header line %.80q", ErrMalformed, line)
		}
		header.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
	}

	resp.Status = 200
	if s := header.Get("Status"); s != "" {
		code, _, _ := strings.Cut(s, " ")
		n, err := strconv.Atoi(code)
		if err != nil || len(code) != 3 || n < 100 {
			return fmt.Errorf("%w: CGI Status header %.80q", ErrMalformed, s)
		}
		resp.Status = n
		header.Del("Status")
	} else if header.Get("Location") != "" {
		resp.Status = 302
	}
	resp.Header = header
	resp.Body = body
	return nil
}

// headerEnd returns where the header block ends (the start of the first
// blank line) and the length of that blank line, accepting both CRLF and bare
// LF line ends (PHP sends CRLF; CGI scripts in the wild send either). It
// returns -1 when there is no blank line.
func headerEnd(b []byte) (end, sep int) {
	start := 0
	for {
		i := bytes.IndexByte(b[start:], '\n')
		if i < 0 {
			return -1, 0
		}
		if line := b[start : start+i]; len(line) == 0 || string(line) == "\r" {
			return start, len(line) + 1
		}
		start += i + 1
	}
}

func protocolStatusName(s byte) string {
	switch s {
	case statusCantMpxConn:
		return "server cannot multiplex connections"
	case statusOverloaded:
		return "server overloaded"
	case statusUnknownRole:
		return "server does not know the responder role"
	}
	return fmt.Sprintf("unknown protocol status %d", s)
}

func recordTypeName(t byte) string {
	names := map[byte]string{
		typeBeginRequest: "BEGIN_REQUEST", typeAbortRequest: "ABORT_REQUEST", typeEndRequest: "END_REQUEST",
		typeParams: "PARAMS", typeStdin: "STDIN", typeStdout: "STDOUT", typeStderr: "STDERR", typeData: "DATA",
		typeGetValues: "GET_VALUES", typeGetValuesRes: "GET_VALUES_RESULT", typeUnknownType: "UNKNOWN_TYPE",
	}
	if s, ok := names[t]; ok {
		return s
	}
	return strconv.Itoa(int(t))
}
