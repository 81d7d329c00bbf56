package procmgr_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
)

const healthFPMBinary = "/usr/sbin/php-fpm8.2"

// healthFPM is a php-fpm master started by a test, in its own process group
// so that the master and its workers can be signalled together.
type healthFPM struct {
	dir, sock, log string
	cmd            *exec.Cmd
	done           chan struct{} // closed when the master has been reaped
}

// healthProbes is what the pool needs for Ping and FetchPoolStatus.
const healthProbes = "ping.path = /ping\npm.status_path = /status\n"

// healthStartFPM starts php-fpm with one pool named pool, configured by
// lines (listen is added). It does not wait for the pool to answer.
func healthStartFPM(tb testing.TB, pool, lines string) *healthFPM {
	tb.Helper()
	if _, err := os.Stat(healthFPMBinary); err != nil {
		tb.Fatalf("php-fpm8.2 not installed: apt-get install php8.2-fpm (%v)", err)
	}
	dir := tb.TempDir()
	f := &healthFPM{dir: dir, sock: dir + "/php.sock", log: dir + "/fpm.log", done: make(chan struct{})}
	if len(f.sock) >= 108 {
		tb.Fatalf("socket path %q is %d bytes; Unix sockets allow 107", f.sock, len(f.sock))
	}
	conf := fmt.Sprintf(`[global]
error_log = %s
pid = %s/fpm.pid
daemonize = no
systemd_interval = 0

[%s]
listen = %s
%s
`, f.log, dir, pool, f.sock, lines)
	if err := os.WriteFile(dir+"/fpm.conf", []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	// -R: tests run as root, and php-fpm refuses root pools without it. With
	// no "user" line the workers then stay root, which is fine for a test.
	f.cmd = exec.Command(healthFPMBinary, "--nodaemonize", "--fpm-config", dir+"/fpm.conf", "-R")
	// Pdeathsig: a test binary that dies (a panic, the -timeout alarm) runs
	// no cleanup; the master at least goes with it.
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	f.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // no NOTIFY_SOCKET from an outer systemd
	// A file, not a pipe: the workers inherit the master's stdout and
	// stderr, and with a pipe cmd.Wait would wait for every worker too.
	out, err := os.Create(dir + "/fpm.out")
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	f.cmd.Stdout, f.cmd.Stderr = out, out
	if err := f.cmd.Start(); err != nil {
		tb.Fatalf("start php-fpm: %v", err)
	}
	go func() {
		_ = f.cmd.Wait()
		close(f.done)
	}()
	tb.Cleanup(func() {
		f.signal(syscall.SIGKILL)
		<-f.done
		if tb.Failed() {
			logText, _ := os.ReadFile(f.log)
			if len(logText) > 4096 {
				logText = append([]byte("...\n"), logText[len(logText)-4096:]...)
			}
			outText, _ := os.ReadFile(dir + "/fpm.out")
			tb.Logf("php-fpm output:\n%s\nphp-fpm log:\n%s", outText, logText)
		}
	})
	return f
}

// signal sends sig to the master and its workers.
func (f *healthFPM) signal(sig syscall.Signal) {
	_ = syscall.Kill(-f.cmd.Process.Pid, sig)
}

// kill9 kills master and workers at once and waits until they are gone.
func (f *healthFPM) kill9(tb testing.TB) {
	tb.Helper()
	f.signal(syscall.SIGKILL)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		tb.Fatal("php-fpm master still alive 5s after SIGKILL")
	}
	// The workers are not our children: wait until none is alive.
	for i := 0; healthGroupAlive(f.cmd.Process.Pid); i++ {
		if i == 500 {
			tb.Fatal("php-fpm workers still alive 5s after SIGKILL")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// healthGroupAlive reports whether a process of group pgid still runs.
// Zombies do not count: they hold no sockets, and orphaned workers stay
// zombies until PID 1 reaps them, which in some containers takes a second.
func healthGroupAlive(pgid int) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // not a process, or gone
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) >= 3 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" && fields[0] != "X" {
			return true
		}
	}
	return false
}

func healthWaitReady(tb testing.TB, f *healthFPM) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := procmgr.WaitReady(ctx, f.sock); err != nil {
		tb.Fatalf("WaitReady on a fresh php-fpm: %v", err)
	}
	return time.Since(start)
}

func healthCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestHealthRealFPM(t *testing.T) {
	fpm := healthStartFPM(t, "ikabud-health", healthProbes+"pm = ondemand\npm.max_children = 2")
	t.Logf("WaitReady on a freshly started php-fpm: %v", healthWaitReady(t, fpm))

	if err := procmgr.Ping(healthCtx(t, 2*time.Second), fpm.sock); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	s1, err := procmgr.FetchPoolStatus(healthCtx(t, 2*time.Second), fpm.sock)
	if err != nil {
		t.Fatalf("FetchPoolStatus: %v", err)
	}
	s2, err := procmgr.FetchPoolStatus(healthCtx(t, 2*time.Second), fpm.sock)
	if err != nil {
		t.Fatalf("FetchPoolStatus: %v", err)
	}
	t.Logf("pool status: %+v", *s2)
	if s2.Pool != "ikabud-health" || s2.ProcessManager != "ondemand" {
		t.Errorf("pool %q process manager %q, want ikabud-health, ondemand", s2.Pool, s2.ProcessManager)
	}
	if s2.AcceptedConn <= s1.AcceptedConn {
		t.Errorf("accepted conn %d then %d: want it to grow with each request", s1.AcceptedConn, s2.AcceptedConn)
	}
	// WaitReady's ping, Ping and the first status request came before.
	if s1.AcceptedConn < 3 {
		t.Errorf("accepted conn %d after at least 3 requests", s1.AcceptedConn)
	}
	// A worker has served these requests. (Whether the status request
	// counts itself as active depends on when php-fpm samples its
	// scoreboard, so active processes may read 0.)
	if s2.TotalProcesses < 1 || s2.MaxActiveProcesses < 1 {
		t.Errorf("total %d max active %d: a worker served the requests", s2.TotalProcesses, s2.MaxActiveProcesses)
	}

	h := procmgr.CheckHealth(t.Context(), fpm.sock)
	if !h.Healthy || h.Reason != "" {
		t.Fatalf("CheckHealth on a running pool: %+v", h)
	}
	if h.Pool == nil || h.Pool.Pool != "ikabud-health" || h.Pool.AcceptedConn <= s2.AcceptedConn {
		t.Errorf("CheckHealth pool %+v, want ikabud-health with accepted conn > %d", h.Pool, s2.AcceptedConn)
	}
	if h.PingLatency <= 0 || h.PingLatency > time.Second {
		t.Errorf("ping latency %v", h.PingLatency)
	}
	if time.Since(h.CheckedAt) > 5*time.Second || h.CheckedAt.After(time.Now()) {
		t.Errorf("checked at %v", h.CheckedAt)
	}
	t.Logf("healthy: ping latency %v", h.PingLatency)

	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"healthy":true`, `"ping_latency_ns":`, `"accepted_conn":`, `"process_manager":"ondemand"`, `"checked_at":`} {
		if !bytes.Contains(js, []byte(key)) {
			t.Errorf("JSON %s lacks %s", js, key)
		}
	}
	if bytes.Contains(js, []byte(`"reason"`)) {
		t.Errorf("JSON of a healthy pool has a reason: %s", js)
	}

	killStart := time.Now()
	fpm.kill9(t)
	t.Logf("kill -9 took %v", time.Since(killStart))
	if _, err := os.Stat(fpm.sock); err != nil {
		t.Logf("after kill -9 the socket file is gone: %v", err)
	} else {
		t.Logf("after kill -9 the socket file stays behind")
	}
	start := time.Now()
	h = procmgr.CheckHealth(t.Context(), fpm.sock)
	if h.Healthy || !strings.Contains(h.Reason, "connection") {
		t.Errorf("CheckHealth after kill -9: %+v, want unhealthy with a reason about the connection", h)
	}
	if h.Pool != nil || h.PingLatency != 0 {
		t.Errorf("CheckHealth after kill -9 reports pool %+v, latency %v", h.Pool, h.PingLatency)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("CheckHealth on a dead pool took %v; a refused connection should be instant", d)
	}
	t.Logf("after kill -9: %q", h.Reason)
}

func TestHealthStoppedFPM(t *testing.T) {
	fpm := healthStartFPM(t, "stopped", healthProbes+"pm = static\npm.max_children = 1")
	healthWaitReady(t, fpm)
	fpm.signal(syscall.SIGTERM) // php-fpm's fast shutdown: it removes its socket
	<-fpm.done
	h := procmgr.CheckHealth(t.Context(), fpm.sock)
	if h.Healthy || !strings.Contains(h.Reason, "connection") || !strings.Contains(h.Reason, "socket does not exist") {
		t.Errorf("CheckHealth after SIGTERM: %+v, want a connection failure naming the missing socket", h)
	}
	t.Logf("after SIGTERM: %q", h.Reason)
}

func TestHealthFrozenFPM(t *testing.T) {
	fpm := healthStartFPM(t, "frozen", healthProbes+"pm = static\npm.max_children = 1")
	healthWaitReady(t, fpm)
	fpm.signal(syscall.SIGSTOP)
	t.Cleanup(func() { fpm.signal(syscall.SIGCONT) })

	start := time.Now()
	h := procmgr.CheckHealth(healthCtx(t, 400*time.Millisecond), fpm.sock)
	d := time.Since(start)
	if h.Healthy || !strings.Contains(h.Reason, "ping: timeout") {
		t.Errorf("CheckHealth on a stopped pool: %+v, want a ping timeout", h)
	}
	// The ping gets half the budget; no status request follows a failed ping.
	if d < 150*time.Millisecond || d > 350*time.Millisecond {
		t.Errorf("CheckHealth took %v, want about 200ms (half of the 400ms budget)", d)
	}
	t.Logf("frozen (SIGSTOP): %q after %v", h.Reason, d)

	start = time.Now()
	h = procmgr.CheckHealth(t.Context(), fpm.sock) // no deadline: 2s in all
	d = time.Since(start)
	if h.Healthy || d < 900*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("CheckHealth without deadline on a stopped pool: %+v after %v, want a timeout after about 1s", h, d)
	}

	fpm.signal(syscall.SIGCONT)
	if h := procmgr.CheckHealth(t.Context(), fpm.sock); !h.Healthy {
		t.Errorf("CheckHealth after SIGCONT: %+v", h)
	}
}

func TestHealthPoolWithoutPingAndStatus(t *testing.T) {
	// A pool without ping.path and pm.status_path: php-fpm then looks for a
	// script named /ping and answers 404. (Not "ping.path =" with an empty
	// value: php-fpm -t accepts that, but every worker exits with code 70
	// at once and the master respawns it forever.)
	fpm := healthStartFPM(t, "bare", "pm = static\npm.max_children = 1")
	ctx := healthCtx(t, 2*time.Second)
	err := procmgr.Ping(ctx, fpm.sock)
	for i := 0; err != nil && !strings.Contains(err.Error(), "status http") && i < 200; i++ {
		time.Sleep(10 * time.Millisecond) // not up yet
		err = procmgr.Ping(ctx, fpm.sock)
	}
	if err == nil || !strings.Contains(err.Error(), "status http 404") || !strings.HasPrefix(err.Error(), "procmgr: ping ") {
		t.Fatalf("Ping without ping.path: %v, want procmgr: ping ... status http 404", err)
	}
	if _, err := procmgr.FetchPoolStatus(ctx, fpm.sock); err == nil || !strings.Contains(err.Error(), "status http 404") {
		t.Errorf("FetchPoolStatus without pm.status_path: %v, want status http 404", err)
	}
	if h := procmgr.CheckHealth(ctx, fpm.sock); h.Healthy || h.Reason != "ping: status http 404" {
		t.Errorf("CheckHealth: %+v, want reason %q", h, "ping: status http 404")
	}
}

func TestWaitReadyNobodyListening(t *testing.T) {
	dir := t.TempDir()
	// A socket file left by a dead master, and no socket at all.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/dead.sock", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	for sock, want := range map[string]error{dir + "/dead.sock": syscall.ECONNREFUSED, dir + "/missing.sock": syscall.ENOENT} {
		start := time.Now()
		err := procmgr.WaitReady(healthCtx(t, 150*time.Millisecond), sock)
		d := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, want) {
			t.Errorf("WaitReady(%s): %v, want context.DeadlineExceeded and %v", sock, err, want)
		}
		if d < 140*time.Millisecond || d > 500*time.Millisecond {
			t.Errorf("WaitReady(%s) gave up after %v, want about 150ms", sock, d)
		}
		t.Logf("WaitReady(%s): %v", sock, err)
	}
}

// healthFakePool answers every FastCGI request with stdout, like a pool
// that is not quite php-fpm. Only for cases a real php-fpm cannot produce.
func healthFakePool(t *testing.T, stdout string) string {
	t.Helper()
	sock := t.TempDir() + "/fake.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				healthFakeServe(c, stdout)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return sock
}

// healthFakeServe reads records up to the empty STDIN, then answers.
func healthFakeServe(c net.Conn, stdout string) {
	var h [8]byte
	for {
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(h[4:])) + int(h[6])
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return
		}
		if h[1] == 5 && n == 0 { // empty STDIN: the request is complete
			break
		}
	}
	rec := func(typ byte, content []byte) []byte {
		hdr := []byte{1, typ, 0, 1, byte(len(content) >> 8), byte(len(content)), 0, 0}
		return append(hdr, content...)
	}
	var out []byte
	out = append(out, rec(6, []byte(stdout))...)
	out = append(out, rec(6, nil)...)
	out = append(out, rec(3, make([]byte, 8))...)
	_, _ = c.Write(out)
}

func TestHealthExpiredContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), -time.Second)
	defer cancel()
	h := procmgr.CheckHealth(ctx, t.TempDir()+"/none.sock")
	if h.Healthy || h.Reason != "ping: timeout after 0s" {
		t.Errorf("CheckHealth with an expired ctx: %+v", h)
	}
}

func TestHealthWrongPingAnswer(t *testing.T) {
	sock := healthFakePool(t, "Content-Type: text/plain\r\n\r\npang")
	err := procmgr.Ping(healthCtx(t, 2*time.Second), sock)
	if err == nil || !strings.Contains(err.Error(), `"pang"`) {
		t.Fatalf("Ping against a pool answering pang: %v", err)
	}
	h := procmgr.CheckHealth(t.Context(), sock)
	if h.Healthy || !strings.Contains(h.Reason, `wrong answer "pang"`) {
		t.Errorf("CheckHealth: %+v, want unhealthy naming the wrong answer", h)
	}
	t.Logf("wrong answer: %q", h.Reason)
}

func TestFetchPoolStatusFieldNames(t *testing.T) {
	// A status page shaped like php-fpm 8.2's, with every number distinct so that a field read from the wrong key shows.
	const page = `{"pool":"p","process manager":"dynamic","start time":1700000000,"start since":1,` +
		`"accepted conn":2,"listen queue":3,"max listen queue":4,"listen queue len":5,"idle processes":6,` +
		`"active processes":7,"total processes":8,"max active processes":9,"max children reached":10,"slow requests":11}`
	sock := healthFakePool(t, "Content-type: application/json\r\n\r\n"+page)
	got, err := procmgr.FetchPoolStatus(healthCtx(t, 2*time.Second), sock)
	if err != nil {
		t.Fatal(err)
	}
	want := procmgr.PoolStatus{Pool: "p", ProcessManager: "dynamic", StartSince: 1, AcceptedConn: 2, ListenQueue: 3,
		MaxListenQueue: 4, ListenQueueLen: 5, IdleProcesses: 6, ActiveProcesses: 7, TotalProcesses: 8,
		MaxActiveProcesses: 9, MaxChildrenReached: 10, SlowRequests: 11}
	if *got != want {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}

	sock = healthFakePool(t, "Content-type: text/plain\r\n\r\npool: p\nprocess manager: dynamic\n")
	if _, err := procmgr.FetchPoolStatus(healthCtx(t, 2*time.Second), sock); err == nil || !strings.Contains(err.Error(), "invalid json") {
		t.Errorf("FetchPoolStatus on a text page: %v, want invalid json", err)
	}
}

func TestHealthStatusPageRawMatchesRealFPM(t *testing.T) {
	// Guard against php-fpm renaming its keys: every key PoolStatus reads
	// must be on the real page.
	fpm := healthStartFPM(t, "raw", healthProbes+"pm = static\npm.max_children = 1")
	healthWaitReady(t, fpm)
	resp, err := fcgi.Do(healthCtx(t, 2*time.Second), fpm.sock, fcgi.Request{Params: map[string]string{
		"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/status", "SCRIPT_FILENAME": "/status", "QUERY_STRING": "json",
		"REQUEST_URI": "/status?json", "DOCUMENT_URI": "/status", "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("raw status page: %d %v %s", resp.Status, resp.Header, resp.Body)
	var raw map[string]any
	if err := json.Unmarshal(resp.Body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"pool", "process manager", "start since", "accepted conn", "listen queue",
		"max listen queue", "listen queue len", "idle processes", "active processes", "total processes",
		"max active processes", "max children reached", "slow requests"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("real status page lacks %q", key)
		}
	}
}

func BenchmarkPing(b *testing.B) {
	fpm := healthStartFPM(b, "bench", healthProbes+"pm = static\npm.max_children = 1")
	healthWaitReady(b, fpm)
	ctx := context.Background()
	for b.Loop() {
		if err := procmgr.Ping(ctx, fpm.sock); err != nil {
			b.Fatal(err)
		}
	}
}
