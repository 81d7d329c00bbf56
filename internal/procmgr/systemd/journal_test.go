package systemd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
)

// At most 32 journalctl readers run at once (each follow holds one of
// root's 128 inotify instances): the 33rd follow is refused with a
// conflict, and a slot freed by a follow that ended is taken again.
func TestJournalReaderCap(t *testing.T) {
	_, b, id, ctx := provisionOne(t, "jr")
	const slots = 32
	cancels := make([]context.CancelFunc, 0, slots)
	for i := range slots {
		fctx, fcancel := context.WithCancel(ctx)
		cancels = append(cancels, fcancel)
		if _, err := b.FollowLogs(fctx, id, 1); err != nil {
			t.Fatalf("follow %d of %d: %v", i+1, slots, err)
		}
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	if _, err := b.FollowLogs(ctx, id, 1); !errors.Is(err, procmgr.ErrConflict) {
		t.Fatalf("follow %d: %v, want a conflict (every reader slot taken)", slots+1, err)
	}
	if _, err := b.Logs(ctx, id, 5); !errors.Is(err, procmgr.ErrConflict) {
		t.Errorf("a one-off read with every slot taken: %v, want a conflict", err)
	}
	// One follow ends: its slot is free again once its journalctl is gone.
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fctx, fcancel := context.WithCancel(ctx)
		_, err := b.FollowLogs(fctx, id, 1)
		if err == nil {
			cancels = append(cancels, fcancel)
			break
		}
		fcancel()
		if time.Now().After(deadline) {
			t.Fatalf("no slot free 10 s after a follow ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A journal read gathers its lines within procmgr.LogMemory: with the
// budget nearly spent, reading many lines fails with ErrLogMemory (a
// conflict) instead of holding them; with room, the same read works.
func TestJournalReadWithinLogMemory(t *testing.T) {
	l, b, id, ctx := provisionOne(t, "jm")
	script := filepath.Join(l.PublicDir(id), "lines.php")
	if err := os.WriteFile(script, []byte(`<?php for ($i = 0; $i < 300; $i++) { error_log("budget line $i ".str_repeat("y", 200)); } echo "ok";`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fcgi.Do(ctx, l.SocketPath(id), fcgi.Request{Params: map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
		"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/lines.php", "REQUEST_URI": "/lines.php",
	}}); err != nil {
		t.Fatal(err)
	}
	var lines []procmgr.LogLine
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if lines, err = b.Logs(ctx, id, 1000); err != nil {
			t.Fatal(err)
		}
		if len(lines) >= 300 || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) < 300 {
		t.Fatalf("the journal has %d lines of the instance, want 300", len(lines))
	}
	saved := procmgr.LogMemory.Limit()
	procmgr.LogMemory.SetLimit(procmgr.LogMemory.Used() + 16<<10)
	_, err := b.Logs(ctx, id, 1000)
	procmgr.LogMemory.SetLimit(saved)
	if !errors.Is(err, procmgr.ErrLogMemory) || !errors.Is(err, procmgr.ErrConflict) {
		t.Fatalf("a read of 300 long lines with 16 KiB of budget left: %v, want ErrLogMemory", err)
	}
}
