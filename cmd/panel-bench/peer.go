package main

// The peer side by side: the same php-fpm masters under Debian's
// supervisord, measured in the same run as the panel's supervisor.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// listenerPy is a supervisord event listener that writes each event with
// the time it received it, so that kill-to-event is timed by the peer's own
// delivery, not by the bench's polling.
const listenerPy = `import sys, time
out = open(sys.argv[1], 'a', buffering=1)
while True:
    sys.stdout.write('READY\n'); sys.stdout.flush()
    header = dict(x.split(':', 1) for x in sys.stdin.readline().split())
    payload = sys.stdin.read(int(header['len']))
    out.write('%d %s %s\n' % (time.time_ns(), header['eventname'], payload.replace('\n', ' ')))
    sys.stdout.write('RESULT 2\nOK'); sys.stdout.flush()
`

type peer struct {
	b      *bench
	dir    string
	conf   string
	events string
	cmd    *exec.Cmd
}

// peerFigures runs ids (provisioned, stopped, the panel not running) under
// supervisord and prints its figures: start all, status of one, kill -9 to
// its event, and restart after kill -9 while a worker is busy.
func (b *bench) peerFigures(ids []string, samples int) error {
	if _, err := os.Stat("/usr/bin/supervisord"); err != nil {
		b.note("supervisord (Debian's supervisor) is not installed: no peer figures (make bench installs it)")
		return nil
	}
	p := &peer{b: b, dir: filepath.Join(filepath.Dir(b.layout.InstancesRoot), "peer")}
	if err := p.start(ids); err != nil {
		return err
	}
	defer p.stop(ids)
	ctl := func(args ...string) error {
		out, err := exec.Command("supervisorctl", append([]string{"-c", p.conf}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("supervisorctl %v: %v %s", args, err, out)
		}
		return nil
	}
	t0 := time.Now()
	if err := ctl("start", "all"); err != nil {
		return err
	}
	if err := b.waitAllReady(ids, 2*time.Minute); err != nil {
		return err
	}
	b.note(fmt.Sprintf("%-58s %10s  (all answering ping)", fmt.Sprintf("peer supervisord: start %d (supervisorctl start all)", len(ids)), ms(time.Since(t0))))

	var ds []time.Duration
	for i := range 20 {
		t0 := time.Now()
		if err := ctl("status", ids[i%len(ids)]); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	b.note(fmt.Sprintf("%-58s p50 %10s  (n=%d; whole process, as `panel status` above)", "peer supervisord: supervisorctl status of one", ms(pct(ds, 0.5)), len(ds)))

	ds = ds[:0]
	for _, id := range ids[:samples] {
		pid, err := p.pid(id)
		if err != nil {
			return err
		}
		t0 := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		at, err := p.waitEvent(id, pid, 5*time.Second)
		if err != nil {
			return err
		}
		ds = append(ds, at.Sub(t0))
		if err := procmgr.WaitReady(context.Background(), b.layout.SocketPath(procmgr.InstanceID(id))); err != nil {
			return err
		}
	}
	b.note(fmt.Sprintf("%-58s p50 %10s  p90 %10s  (n=%d; its event listener's receipt)", "peer supervisord: kill -9 of a master until its event", ms(pct(ds, 0.5)), ms(pct(ds, 0.9)), len(ds)))

	// The new master is found in /proc, as ours is through the API: at
	// 300 ms a call, supervisorctl would add its own time to the peer's.
	ds, orphans, err := b.killBusy(ids[samples:2*samples], func(id string) (int, error) {
		pids := procmgrtest.MasterPIDs("(" + filepath.Join(p.dir, id+".conf") + ")")
		if len(pids) != 1 {
			return 0, fmt.Errorf("%d masters of %s", len(pids), id)
		}
		return pids[0], nil
	})
	if err != nil {
		return err
	}
	b.note(fmt.Sprintf("%-58s p50 %10s  p90 %10s  (n=%d); workers left running after the restart: %d",
		"peer supervisord: kill -9 with a busy worker, until ping", ms(pct(ds, 0.5)), ms(pct(ds, 0.9)), len(ds), orphans))
	return nil
}

func (p *peer) start(ids []string) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	p.conf = filepath.Join(p.dir, "supervisord.conf")
	p.events = filepath.Join(p.dir, "events.log")
	listener := filepath.Join(p.dir, "listener.py")
	if err := os.WriteFile(listener, []byte(listenerPy), 0o600); err != nil {
		return err
	}
	var c strings.Builder
	fmt.Fprintf(&c, "[unix_http_server]\nfile=%s/supervisor.sock\nchmod=0700\n\n", p.dir)
	fmt.Fprintf(&c, "[supervisord]\nnodaemon=true\nlogfile=%s/supervisord.log\npidfile=%s/supervisord.pid\nchildlogdir=%s\n\n", p.dir, p.dir, p.dir)
	fmt.Fprintf(&c, "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n")
	fmt.Fprintf(&c, "[supervisorctl]\nserverurl=unix://%s/supervisor.sock\n\n", p.dir)
	fmt.Fprintf(&c, "[eventlistener:benchlistener]\ncommand=/usr/bin/python3 %s %s\nevents=PROCESS_STATE\nbuffer_size=1000\n\n", listener, p.events)
	for _, id := range ids {
		iid := procmgr.InstanceID(id)
		u, err := user.Lookup(iid.UserName())
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		rt := p.b.layout.RuntimeDir(iid)
		os.MkdirAll(rt, 0o750)
		os.Chown(rt, uid, gid)
		// The instance's own config, but with errors to syslog: the
		// supervisor backend's /proc/self/fd/2 is a FIFO the instance
		// owns, while under supervisord it is root's pipe, which php-fpm
		// (as the instance's user) cannot reopen.
		orig, err := os.ReadFile(p.b.layout.FPMConfigPath(iid))
		if err != nil {
			return err
		}
		conf := filepath.Join(p.dir, id+".conf")
		if err := os.WriteFile(conf, []byte(strings.ReplaceAll(string(orig), "/proc/self/fd/2", "syslog")), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&c, "[program:%s]\ncommand=%s --nodaemonize --fpm-config %s\nuser=%s\nautostart=false\nautorestart=true\nstartsecs=0\nstopsignal=QUIT\nredirect_stderr=true\nstdout_logfile=%s/%s.log\n\n",
			id, p.b.layout.FPMBinaryLink(iid), conf, iid.UserName(), p.dir, id)
	}
	if err := os.WriteFile(p.conf, []byte(c.String()), 0o600); err != nil {
		return err
	}
	p.cmd = exec.Command("/usr/bin/supervisord", "-c", p.conf)
	if err := p.cmd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if exec.Command("supervisorctl", "-c", p.conf, "pid").Run() == nil {
			return nil
		}
	}
	return fmt.Errorf("supervisord did not answer")
}

func (p *peer) stop(ids []string) {
	exec.Command("supervisorctl", "-c", p.conf, "stop", "all").Run()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	for _, id := range ids {
		os.RemoveAll(p.b.layout.RuntimeDir(procmgr.InstanceID(id)))
	}
}

// pid is the master's pid as supervisord reports it.
func (p *peer) pid(id string) (int, error) {
	out, err := exec.Command("supervisorctl", "-c", p.conf, "pid", id).Output()
	if err != nil {
		return 0, fmt.Errorf("supervisorctl pid %s: %v", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("supervisorctl pid %s: %q", id, out)
	}
	return pid, nil
}

// waitEvent waits for the listener's record of id's exit (the state it
// left RUNNING for) and returns when the listener received it.
func (p *peer) waitEvent(id string, pid int, d time.Duration) (time.Time, error) {
	deadline := time.Now().Add(d)
	want := fmt.Sprintf("processname:%s ", id)
	wantPid := fmt.Sprintf("pid:%d", pid)
	for time.Now().Before(deadline) {
		f, err := os.Open(p.events)
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				if strings.Contains(line, "PROCESS_STATE_EXITED") && strings.Contains(line, want) && strings.Contains(line, wantPid) {
					f.Close()
					ns, _ := strconv.ParseInt(strings.Fields(line)[0], 10, 64)
					return time.Unix(0, ns), nil
				}
			}
			f.Close()
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no exit event of %s (pid %d) from supervisord", id, pid)
}

// killBusy kills each master with SIGKILL while one of its workers serves a
// request that sleeps, and times until a new master answers ping. It counts
// the workers still running after the restart (orphans of the killed
// master).
func (b *bench) killBusy(ids []string, pidOf func(string) (int, error)) ([]time.Duration, int, error) {
	var ds []time.Duration
	orphans := 0
	for _, id := range ids {
		iid := procmgr.InstanceID(id)
		script := filepath.Join(b.layout.PublicDir(iid), "busy.php")
		if err := os.WriteFile(script, []byte(`<?php sleep(3); echo "done";`), 0o644); err != nil {
			return nil, 0, err
		}
		pid, err := pidOf(id)
		if err != nil {
			return nil, 0, err
		}
		go fcgi.Do(context.Background(), b.layout.SocketPath(iid), fcgi.Request{Params: map[string]string{
			"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
			"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/busy.php", "REQUEST_URI": "/busy.php",
		}})
		var workers []int
		for deadline := time.Now().Add(3 * time.Second); len(workers) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			workers = procmgr.Children(pid)
		}
		if len(workers) == 0 {
			return nil, 0, fmt.Errorf("%s: no busy worker", id)
		}
		t0 := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		for {
			if np, err := pidOf(id); err == nil && np != pid {
				if procmgr.Ping(context.Background(), b.layout.SocketPath(iid)) == nil {
					break
				}
			}
			if time.Since(t0) > 10*time.Second {
				return nil, 0, fmt.Errorf("%s not serving 10 s after kill -9 of its master", id)
			}
			time.Sleep(2 * time.Millisecond)
		}
		ds = append(ds, time.Since(t0))
		for _, w := range workers {
			if procmgr.ProcessAlive(w) {
				orphans++
				syscall.Kill(w, syscall.SIGKILL)
			}
		}
	}
	return ds, orphans, nil
}
