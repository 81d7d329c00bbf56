package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
)

// restoreFigure: n instances recorded as running and gone from the host (a
// reboot: every master killed, /run emptied) are all brought back by a
// panel start. It makes the instances beyond those running, kills
// everything with the panel stopped, starts the panel and times until
// every pool answers; then the daemon's memory with n running.
func (b *bench) restoreFigure(running []string, n int) error {
	ids := append([]string(nil), running...)
	var more []string
	for i := len(running); i < n; i++ {
		more = append(more, fmt.Sprintf("rs%04d", i))
	}
	fmt.Printf("creating %d more instances for the restore figure...\n", len(more))
	t0 := time.Now()
	if err := parallel(more, 8, func(id string) error { _, err := b.create(id); return err }); err != nil {
		return err
	}
	b.note(fmt.Sprintf("%-58s %d in %s", "setup: create instances for the restore figure", len(more), time.Since(t0).Round(time.Millisecond)))
	ids = append(ids, more...)

	b.stopDaemon()
	// The reboot: every master and worker of this layout killed, the
	// supervisor's state and the runtime directories gone.
	for _, pid := range b.masterPIDs() {
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(30 * time.Second); len(b.masterPIDs()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if left := len(b.masterPIDs()); left > 0 {
		return fmt.Errorf("%d masters still there after the simulated reboot", left)
	}
	state := "/run/" + b.layout.UnitPrefix + "-supervise"
	files, _ := filepath.Glob(state + "/*")
	for _, f := range files {
		os.Remove(f)
	}
	os.RemoveAll(b.layout.RuntimeRoot)

	t0 = time.Now()
	if err := b.startDaemon(); err != nil {
		return err
	}
	if err := b.waitAllReady(ids, 10*time.Minute); err != nil {
		return err
	}
	took := time.Since(t0)
	b.note(fmt.Sprintf("%-58s %10s (%s each)  all %d answering ping",
		fmt.Sprintf("panel start with %d instances running and gone from the host", len(ids)), took.Round(time.Millisecond), ms(took/time.Duration(len(ids))), len(ids)))
	time.Sleep(time.Second)
	b.note(fmt.Sprintf("%-58s %10.1f MiB RSS", fmt.Sprintf("daemon memory with %d instances running", b.running()), float64(vmRSS(b.daemon.Process.Pid))/(1<<20)))
	return nil
}

// loggingMemory: the daemon's memory while every instance in ids logs as
// fast as PHP can for ten seconds (the supervisor reads every line; each
// instance is held to 1,000 lines a second and all of them to the log
// memory budget).
func (b *bench) loggingMemory(ids []string) error {
	const seconds = 10
	code := fmt.Sprintf(`<?php $end = microtime(true) + %d; $i = 0;
while (microtime(true) < $end) { error_log("bench flood $i " . str_repeat("z", 200)); $i++; }
echo $i;`, seconds)
	for _, id := range ids {
		if err := os.WriteFile(filepath.Join(b.layout.PublicDir(procmgr.InstanceID(id)), "flood.php"), []byte(code), 0o644); err != nil {
			return err
		}
	}
	before := vmRSS(b.daemon.Process.Pid)
	var peak uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if r := vmRSS(b.daemon.Process.Pid); r > peak {
				peak = r
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var written int64
	var mu sync.Mutex
	err := parallel(ids, len(ids), func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), (seconds+30)*time.Second)
		defer cancel()
		script := filepath.Join(b.layout.PublicDir(procmgr.InstanceID(id)), "flood.php")
		resp, err := fcgi.Do(ctx, b.layout.SocketPath(procmgr.InstanceID(id)), fcgi.Request{Params: map[string]string{
			"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
			"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/flood.php", "REQUEST_URI": "/flood.php",
		}})
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		var n int64
		fmt.Sscan(string(resp.Body), &n)
		mu.Lock()
		written += n
		mu.Unlock()
		return nil
	})
	close(stop)
	sampler.Wait()
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	after := vmRSS(b.daemon.Process.Pid)
	// The budget counts the lines' bytes; the heap around them (the Go
	// collector lets it grow to twice what is live) is allowed as much
	// again.
	verdict := "OK"
	if peak > before+2*procmgr.DefaultLogMemory {
		verdict, b.failed = "MISSED", true
	}
	b.note(fmt.Sprintf("%-58s %10.1f MiB RSS peak (%.1f before, %.1f after)  target: peak <= before + 2 x the %d MiB log budget  %s",
		fmt.Sprintf("daemon memory while %d instances log at full rate", len(ids)), float64(peak)/(1<<20), float64(before)/(1<<20), float64(after)/(1<<20), procmgr.DefaultLogMemory>>20, verdict))
	b.note(fmt.Sprintf("  %d lines written by PHP in %d s (%.0f a second; the supervisor keeps at most 1,000 a second per instance)",
		written, seconds, float64(written)/seconds))
	return nil
}
