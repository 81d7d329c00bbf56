package nginx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// Supervised runs nginx as the panel's own child where there is no systemd
// (containers, the supervisor backend), with the restart policy of the
// instances: started again 100 ms after it ends, until it ends 5 times in
// 10 s. Its master outlives the panel (sites keep serving while the panel
// is down); the next panel adopts it by its pid file.
type Supervised struct {
	Binary  string // default /usr/sbin/nginx
	Main    string // the nginx.conf it runs
	PIDFile string // as Main names it
	Log     *slog.Logger

	mu     sync.Mutex
	pid    int
	exits  []time.Time
	failed string
	closed bool
}

// The restart policy, as the instances' (procmgr's units and supervisor).
const (
	restartDelay  = 100 * time.Millisecond
	restartBurst  = 5
	restartWindow = 10 * time.Second
)

// Kind names the runner.
func (s *Supervised) Kind() string { return "supervised by the panel" }

// MainConfig is the config the supervised nginx reads.
func (s *Supervised) MainConfig() string { return s.Main }

func (s *Supervised) binary() string {
	if s.Binary == "" {
		return "/usr/sbin/nginx"
	}
	return s.Binary
}

func (s *Supervised) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Ensure adopts a running master named by the pid file, or starts one.
func (s *Supervised) Ensure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid > 0 && procmgr.ProcessAlive(s.pid) {
		return nil
	}
	s.failed = ""
	s.exits = nil
	if pid := s.recordedMaster(); pid > 0 {
		s.pid = pid
		s.log().Info("adopted the running nginx master", "action", "nginx", "pid", pid)
		go s.watchAdopted(pid)
		return nil
	}
	return s.spawnLocked(ctx)
}

// recordedMaster is the pid in the pid file when it is a live nginx master.
func (s *Supervised) recordedMaster() int {
	data, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 || !isNginxMaster(pid) {
		return 0
	}
	return pid
}

func (s *Supervised) spawnLocked(ctx context.Context) error {
	if err := testConfig(ctx, s.binary(), s.Main); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	cmd := exec.Command(s.binary(), "-c", s.Main, "-g", "daemon off;")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	// Its own session: a signal to the panel's process group (Ctrl-C,
	// a stop of the panel) does not reach the sites' web server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A pipe of our own, not an io.Writer: Wait would wait for every
	// holder of the write end, and the workers of a killed master hold it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return fmt.Errorf("nginx: start %s: %w", s.binary(), err)
	}
	go copyLines(pr, s.log())
	s.pid = cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(done)
		s.ended(cmd.Process.Pid, err)
	}()
	// Up once the pid file names it (nginx writes it after binding).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("nginx: %s -c %s ended at start; see the panel's log for its errors", s.binary(), s.Main)
		case <-time.After(10 * time.Millisecond):
		}
		if s.recordedMaster() == s.pid {
			s.log().Info("nginx started", "action", "nginx", "pid", s.pid)
			return nil
		}
	}
	return fmt.Errorf("nginx: started as pid %d but it wrote no pid file %s within 10s", s.pid, s.PIDFile)
}

// watchAdopted waits for an adopted master (not our child) to end.
func (s *Supervised) watchAdopted(pid int) {
	for {
		time.Sleep(200 * time.Millisecond)
		if !isNginxMaster(pid) {
			s.ended(pid, errors.New("the adopted master is gone"))
			return
		}
		s.mu.Lock()
		closed, cur := s.closed, s.pid
		s.mu.Unlock()
		if closed || cur != pid {
			return
		}
	}
}

// isNginxMaster says whether pid is a live nginx master (a zombie's
// cmdline is empty).
func isNginxMaster(pid int) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.HasPrefix(string(cmdline), "nginx: master process")
}

// ended restarts nginx after its master ended, within the policy.
func (s *Supervised) ended(pid int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid != pid {
		return
	}
	s.pid = 0
	// Workers outlive a killed master, holding the port: they are in
	// its process group (its own session).
	syscall.Kill(-pid, syscall.SIGKILL)
	if s.closed {
		return
	}
	now := time.Now()
	recent := s.exits[:0]
	for _, t := range s.exits {
		if now.Sub(t) < restartWindow {
			recent = append(recent, t)
		}
	}
	s.exits = append(recent, now)
	if len(s.exits) >= restartBurst {
		s.failed = fmt.Sprintf("nginx ended %d times within %s; not started again until the panel restarts or a site changes (last: %v)", restartBurst, restartWindow, err)
		s.log().Error("nginx keeps ending; giving up", "action", "nginx", "err", err)
		return
	}
	s.log().Warn("nginx ended; starting it again", "action", "nginx", "pid", pid, "err", err)
	time.AfterFunc(restartDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || s.pid != 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.spawnLocked(ctx); err != nil {
			s.log().Error("starting nginx again failed", "action", "nginx", "err", err)
			s.failed = err.Error()
		}
	})
}

// Reload sends the master SIGHUP: it reads its config again and replaces
// its workers gracefully.
func (s *Supervised) Reload(ctx context.Context) error {
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	if pid <= 0 {
		return s.Ensure(ctx)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("nginx: reload (SIGHUP to %d): %w", pid, err)
	}
	return nil
}

// Up says whether the master runs.
func (s *Supervised) Up(context.Context) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid > 0 && procmgr.ProcessAlive(s.pid) {
		return true, fmt.Sprintf("running, master pid %d", s.pid)
	}
	if s.failed != "" {
		return false, s.failed
	}
	return false, "not running"
}

// PID is the master's pid, 0 when none runs.
func (s *Supervised) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Close stops watching; nginx keeps running for the next panel.
func (s *Supervised) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Stop ends the master (QUIT: after requests in flight) and waits, for
// tests and for a panel told to take nginx down.
func (s *Supervised) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	pid := s.pid
	s.mu.Unlock()
	if pid <= 0 {
		pid = s.recordedMaster()
	}
	if pid <= 0 {
		return nil
	}
	syscall.Kill(pid, syscall.SIGQUIT)
	for procmgr.ProcessAlive(pid) && isNginxMaster(pid) {
		select {
		case <-ctx.Done():
			syscall.Kill(pid, syscall.SIGKILL)
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// copyLines hands nginx's output to the panel's log, a line at a time,
// until every holder of the pipe has closed it.
func copyLines(r *os.File, log *slog.Logger) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), procmgr.MaxLogLineLen)
	for sc.Scan() {
		log.Warn("nginx: "+sc.Text(), "action", "nginx")
	}
}
