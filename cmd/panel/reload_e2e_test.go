package main

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

func TestReloadUnderLoadLosesNoRequest(t *testing.T) {
	forEachBackend(t, testReloadUnderLoad)
}

// Pool settings changed and reloaded while visitors keep asking: every
// request is answered (the listening socket outlives the reload, and the
// old workers finish what they hold).
func testReloadUnderLoad(t *testing.T, backend string) {
	d, addr := sitesDaemon(t, backend)
	id := procmgrtest.NewID("steady")
	domain := string(id) + ".example.test"
	d.must("create", string(id), "--domain", domain, "--pm", "dynamic", "--max-children", "6")
	putIndex(t, d, id, "<?php usleep(20000); echo 'ok';\n")
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := fetch(addr, domain, "/", 10*time.Second)
				if err != nil || code != 200 || body != "ok" {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, [3]any{code, body, err})
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	d.must("set", string(id), "--max-children", "8")
	d.must("reload", string(id))
	d.must("set", string(id), "--max-requests", "100", "--max-children", "7")
	d.must("reload", string(id))
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || ok.Load() < 20 {
		errLog, _ := os.ReadFile("/var/log/" + d.layout.UnitPrefix + "/nginx-error.log")
		t.Errorf("%d requests answered, %d failed (first: %v); nginx's error log:\n%s", ok.Load(), failed.Load(), firstErr.Load(), errLog)
	}
}
