package main

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

func TestFrozenMasterIsRestarted(t *testing.T) {
	forEachBackend(t, testFrozenMasterIsRestarted)
}

// kill -STOP of a master: the health watch reports it unhealthy within 10 s
// and, by the default policy, the instance is restarted and serving.
func testFrozenMasterIsRestarted(t *testing.T, backend string) {
	d, addr := sitesDaemon(t, backend)
	id := string(procmgrtest.NewID("frozen"))
	domain := id + ".example.test"
	pid := field(t, pidRe, d.must("create", id, "--domain", domain))
	putIndex(t, d, procmgr.InstanceID(id), "<?php usleep(200000); echo 'ok';\n")
	// Workers that outlive the frozen master's end (ondemand keeps them
	// 10 s): the restart must not wait for them.
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); fetch(addr, domain, "/", 5*time.Second) }()
	}
	wg.Wait()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	start := time.Now()
	var out string
	for {
		out, _ = d.panel("status", id)
		if strings.Contains(out, "Health watch: UNHEALTHY") {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("not reported unhealthy within 10s of SIGSTOP:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reported := time.Since(start)
	if !strings.Contains(out, "SIGSTOP") || !strings.Contains(out, "restarted") {
		t.Errorf("status while unhealthy:\n%s", out)
	}
	for {
		out, _ = d.panel("status", id)
		if p := field(t, pidRe, out); p != pid && p > 1 && strings.Contains(out, "State: running") {
			if code, body, _ := fetch(addr, domain, "/", 2*time.Second); code == 200 && body == "ok" {
				break
			}
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("not serving again within 15s of SIGSTOP:\n%s\ndaemon log:\n%s", out, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: unhealthy after %s, serving again after %s", backend, reported.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if audit := d.must("audit", id); !strings.Contains(audit, "health-restart") {
		t.Errorf("audit:\n%s", audit)
	}
}
