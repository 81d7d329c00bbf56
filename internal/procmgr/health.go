package procmgr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr/fcgi"
)

// Health is the result of probing an instance's PHP-FPM pool over its socket.
type Health struct {
	Healthy bool `json:"healthy"`
	// Reason says why the pool is unhealthy, in words a person can act on:
	// "ping: timeout after 1s", "ping: connection refused",
	// `ping: wrong answer "pang"`, "status page: status http 404", ...
	Reason string `json:"reason,omitempty"`
	// PingLatency is the round trip of a successful ping, dial included;
	// zero when the ping failed.
	PingLatency time.Duration `json:"ping_latency_ns"`
	// Pool is the pool's status page; nil when it could not be read.
	Pool *PoolStatus `json:"pool,omitempty"`
	// MasterStopped: the master is frozen (SIGSTOP), whatever its idle
	// workers answer.
	MasterStopped bool `json:"master_stopped,omitempty"`
	// HTTP is the probe through the web server to the instance's primary
	// domain; nil when the instance has no site.
	HTTP      *HTTPProbe `json:"http,omitempty"`
	CheckedAt time.Time  `json:"checked_at"`
}

// HTTPProbe is one request for an instance's site through the web server,
// on the path that reaches the pool's ping.
type HTTPProbe struct {
	// URL is what was asked for, Host the Host header sent with it.
	URL  string `json:"url"`
	Host string `json:"host"`
	// Status is the HTTP status answered; 0 when none came.
	Status  int           `json:"status,omitempty"`
	Latency time.Duration `json:"latency_ns,omitempty"`
	OK      bool          `json:"ok"`
	// Reason says why the probe failed: "502 (the pool is not running)",
	// "timeout after 3s", ...
	Reason string `json:"reason,omitempty"`
}

// PoolStatus is php-fpm's status page (?json).
type PoolStatus struct {
	Pool           string `json:"pool"`
	ProcessManager string `json:"process_manager"`
	// StartSince is the pool's age in seconds.
	StartSince         int64 `json:"start_since"`
	AcceptedConn       int64 `json:"accepted_conn"`
	ListenQueue        int64 `json:"listen_queue"`
	MaxListenQueue     int64 `json:"max_listen_queue"`
	ListenQueueLen     int64 `json:"listen_queue_len"`
	IdleProcesses      int64 `json:"idle_processes"`
	ActiveProcesses    int64 `json:"active_processes"`
	TotalProcesses     int64 `json:"total_processes"`
	MaxActiveProcesses int64 `json:"max_active_processes"`
	MaxChildrenReached int64 `json:"max_children_reached"`
	SlowRequests       int64 `json:"slow_requests"`
}

// fpmStatusJSON is the status page exactly as php-fpm spells it (names with
// spaces); PoolStatus is our spelling.
type fpmStatusJSON struct {
	Pool               string `json:"pool"`
	ProcessManager     string `json:"process manager"`
	StartSince         int64  `json:"start since"`
	AcceptedConn       int64  `json:"accepted conn"`
	ListenQueue        int64  `json:"listen queue"`
	MaxListenQueue     int64  `json:"max listen queue"`
	ListenQueueLen     int64  `json:"listen queue len"`
	IdleProcesses      int64  `json:"idle processes"`
	ActiveProcesses    int64  `json:"active processes"`
	TotalProcesses     int64  `json:"total processes"`
	MaxActiveProcesses int64  `json:"max active processes"`
	MaxChildrenReached int64  `json:"max children reached"`
	SlowRequests       int64  `json:"slow requests"`
}

// fpmProbeError is what Ping and FetchPoolStatus return. It carries a short
// reason apart from the wrapped cause so that CheckHealth can report the
// reason without parsing messages.
type fpmProbeError struct {
	op     string // "ping" or "status page"
	socket string
	reason string
	err    error // nil when the pool answered, but wrongly
}

func (e *fpmProbeError) Error() string {
	s := "procmgr: " + e.op + " " + e.socket + ": " + e.reason
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *fpmProbeError) Unwrap() error { return e.err }

// fpmGet sends a GET for path?query to the pool with the parameters php-fpm
// needs to route it to its ping or status handler: it matches the ping and
// status paths against SCRIPT_NAME, and answers only requests that carry a
// REQUEST_METHOD. The handlers run before any script lookup, so
// SCRIPT_FILENAME need not exist.
func fpmGet(ctx context.Context, op, socketPath string, peerPID int, path, query string) (*fcgi.Response, error) {
	uri := path
	if query != "" {
		uri += "?" + query
	}
	resp, err := fcgi.Do(ctx, socketPath, fcgi.Request{Params: map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_SOFTWARE":   "ikabud-panel",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       path,
		"SCRIPT_FILENAME":   path,
		"DOCUMENT_URI":      path,
		"REQUEST_URI":       uri,
		"QUERY_STRING":      query,
	}, PeerPID: peerPID})
	if err != nil {
		return nil, &fpmProbeError{op: op, socket: socketPath, reason: fpmReason(err), err: err}
	}
	if resp.Status != 200 {
		return nil, &fpmProbeError{op: op, socket: socketPath, reason: fmt.Sprintf("status http %d", resp.Status)}
	}
	return resp, nil
}

// fpmReason names the failure the way an operator thinks of it.
func fpmReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "connection failed: socket does not exist"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "connection failed: permission denied"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the answer"
	case errors.Is(err, fcgi.ErrRejected):
		return "request rejected by the pool"
	case errors.Is(err, fcgi.ErrMalformed):
		return "malformed FastCGI answer"
	case errors.Is(err, fcgi.ErrTooLarge):
		return "answer too large"
	case errors.Is(err, fcgi.ErrWrongPeer):
		return "the socket is not served by the instance's master"
	}
	return "request failed"
}

// Ping sends GET /ping to the pool and returns nil only if the answer is "pong".
//
// The pool must set ping.path = /ping (and keep the default ping.response).
// Under pm = ondemand a ping spawns a worker when none is idle.
func Ping(ctx context.Context, socketPath string) error { return ping(ctx, socketPath, 0) }

func ping(ctx context.Context, socketPath string, peerPID int) error {
	resp, err := fpmGet(ctx, "ping", socketPath, peerPID, "/ping", "")
	if err != nil {
		return err
	}
	if body := bytes.TrimSpace(resp.Body); string(body) != "pong" {
		return &fpmProbeError{op: "ping", socket: socketPath,
			reason: fmt.Sprintf("wrong answer %.64q (want \"pong\")", body)}
	}
	return nil
}

// FetchPoolStatus GETs /status?json.
//
// The pool must set pm.status_path = /status. Each call counts as one
// accepted connection of the pool.
func FetchPoolStatus(ctx context.Context, socketPath string) (*PoolStatus, error) {
	return fetchPoolStatus(ctx, socketPath, 0)
}

func fetchPoolStatus(ctx context.Context, socketPath string, peerPID int) (*PoolStatus, error) {
	const op = "status page"
	resp, err := fpmGet(ctx, op, socketPath, peerPID, "/status", "json")
	if err != nil {
		return nil, err
	}
	var raw fpmStatusJSON
	if err := json.Unmarshal(resp.Body, &raw); err != nil {
		return nil, &fpmProbeError{op: op, socket: socketPath, reason: "invalid json", err: err}
	}
	if raw.Pool == "" || raw.ProcessManager == "" {
		return nil, &fpmProbeError{op: op, socket: socketPath,
			reason: fmt.Sprintf("not a php-fpm status page: %.64q", resp.Body)}
	}
	return &PoolStatus{
		Pool:               raw.Pool,
		ProcessManager:     raw.ProcessManager,
		StartSince:         raw.StartSince,
		AcceptedConn:       raw.AcceptedConn,
		ListenQueue:        raw.ListenQueue,
		MaxListenQueue:     raw.MaxListenQueue,
		ListenQueueLen:     raw.ListenQueueLen,
		IdleProcesses:      raw.IdleProcesses,
		ActiveProcesses:    raw.ActiveProcesses,
		TotalProcesses:     raw.TotalProcesses,
		MaxActiveProcesses: raw.MaxActiveProcesses,
		MaxChildrenReached: raw.MaxChildrenReached,
		SlowRequests:       raw.SlowRequests,
	}, nil
}

// CheckHealth pings then fetches the status, each with its own timeout
// carved from ctx's deadline (2s in all when ctx has none). It never returns
// an error: problems are Healthy=false with Reason.
//
// The ping gets half of the time left and the status page the rest, so a
// stuck pool costs at most the whole budget. A pool that answers the ping but
// not the status page is unhealthy too: both are configured by us, so a
// missing one means the pool is not running our config.
//
// Healthy proves that a worker answers on the socket, not that the master
// lives: with php-fpm 8.2, workers left behind by a kill -9 of the master
// alone keep answering ping and status (even under pm = ondemand, whose idle
// timeout the master enforces) until they are killed. Backends must watch the
// master's PID and kill the whole cgroup or process group.
func CheckHealth(ctx context.Context, socketPath string) Health {
	return CheckInstanceHealth(ctx, socketPath, 0)
}

// CheckInstanceHealth is CheckHealth of the pool whose master is masterPID:
// the socket must be served by that process (the socket's directory is the
// instance's to write, so its path may lead elsewhere). Zero checks no PID.
func CheckInstanceHealth(ctx context.Context, socketPath string, masterPID int) Health {
	h := Health{CheckedAt: time.Now()}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()

	reason := func(err error, budget time.Duration) string {
		var pe *fpmProbeError
		if !errors.As(err, &pe) {
			return err.Error()
		}
		if pe.reason == "timeout" {
			return fmt.Sprintf("%s: timeout after %v", pe.op, budget.Round(time.Millisecond))
		}
		return pe.op + ": " + pe.reason
	}

	pingBudget := max(time.Until(deadline)/2, 0)
	pingCtx, cancel := context.WithTimeout(ctx, pingBudget)
	start := time.Now()
	err := ping(pingCtx, socketPath, masterPID)
	cancel()
	if err != nil {
		h.Reason = reason(err, pingBudget)
		return h
	}
	h.PingLatency = time.Since(start)
	// Idle workers answer while their master is frozen, but nothing
	// replaces a worker that ends, and an ondemand pool starts none.
	if masterPID > 0 && ProcessStopped(masterPID) {
		h.Reason = fmt.Sprintf("master process %d is stopped (SIGSTOP): its workers answer, but it starts no new one", masterPID)
		h.MasterStopped = true
		return h
	}

	statusBudget := max(time.Until(deadline), 0)
	pool, err := fetchPoolStatus(ctx, socketPath, masterPID)
	if err != nil {
		h.Reason = reason(err, statusBudget)
		return h
	}
	h.Pool = pool
	h.Healthy = true
	return h
}

// HealthProber is a backend whose pools the panel cannot probe over their
// sockets itself (a fake in tests). ProbeHealth asks it instead.
type HealthProber interface {
	// Health reports the pool's health; an absent instance returns
	// ErrNotFound, a stopped one Healthy=false with a Reason.
	Health(ctx context.Context, id InstanceID) (Health, error)
}

// ProbeHealth probes id's pool over its socket (layout l) with
// CheckInstanceHealth, counting only an answer from the master that b's
// Status names: the one health check of every backend. An absent instance
// returns ErrNotFound; one with no master is unhealthy with the reason "no
// master running". A HealthProber is asked instead.
func ProbeHealth(ctx context.Context, b StatusReader, l Layout, id InstanceID) (Health, error) {
	if hp, ok := b.(HealthProber); ok {
		return hp.Health(ctx, id)
	}
	st, err := b.Status(ctx, id)
	if err != nil {
		return Health{}, err
	}
	if st.MainPID == 0 {
		return Health{CheckedAt: time.Now(), Reason: "no master running"}, nil
	}
	// The socket must be served by the master itself: its directory is
	// the instance's to write.
	return CheckInstanceHealth(ctx, l.SocketPath(id), st.MainPID), nil
}

// WaitReady pings every few ms (from 2ms, backing off to 20ms) until the
// pool answers pong or ctx is done; then it returns the last ping error
// wrapped.
//
// A ctx without a deadline waits forever for a pool that never comes up;
// give it one. The error wraps both ctx.Err() and the last ping error, so
// errors.Is works for either.
func WaitReady(ctx context.Context, socketPath string) error {
	return WaitInstanceReady(ctx, socketPath, 0)
}

// WaitInstanceReady is WaitReady for the pool whose master is masterPID:
// only an answer from a socket that process serves counts. Zero checks no
// PID.
func WaitInstanceReady(ctx context.Context, socketPath string, masterPID int) error {
	const (
		firstDelay = 2 * time.Millisecond
		maxDelay   = 20 * time.Millisecond
	)
	delay := firstDelay
	// Since Go 1.23 a stopped timer holds no stale tick, so Reset needs
	// no draining.
	timer := time.NewTimer(delay)
	timer.Stop()
	defer timer.Stop()

	var last error
	for {
		err := ping(ctx, socketPath, masterPID)
		if err == nil {
			return nil
		}
		// An attempt cut short by ctx says less than the one before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("procmgr: wait for pool on %s: %w; last ping: %w", socketPath, ctx.Err(), last)
		case <-timer.C:
		}
		delay = min(2*delay, maxDelay)
	}
}
