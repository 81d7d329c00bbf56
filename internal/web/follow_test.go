package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web"
)

// eventually polls cond until it holds or d passes; it is a bounded wait,
// and the caller asserts on its result.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settledGoroutines returns the goroutine count once it has stopped
// changing (connections closing in the background), waiting at most 2s.
func settledGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	eventually(2*time.Second, func() bool {
		m := runtime.NumGoroutine()
		if m == n {
			same++
		} else {
			n, same = m, 0
		}
		return same >= 5
	})
	return n
}

// follow starts a follow request and returns its lines on a channel that is
// closed when the stream ends; the error of the stream's end is sent on errc.
func (e *webEnv) follow(ctx context.Context, path string) (*http.Response, <-chan procmgr.LogLine, <-chan error) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("follow: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		e.t.Fatalf("follow: status %d", res.StatusCode)
	}
	lines := make(chan procmgr.LogLine, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(lines)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			var l procmgr.LogLine
			dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&l); err != nil {
				errc <- fmt.Errorf("line %q is not one JSON log line: %w", sc.Bytes(), err)
				return
			}
			lines <- l
		}
		errc <- sc.Err()
	}()
	return res, lines, errc
}

func nextLine(t *testing.T, lines <-chan procmgr.LogLine) procmgr.LogLine {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("the stream ended early")
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatal("no log line streamed")
	}
	return procmgr.LogLine{}
}

func TestFollowLogsStreamsAndLeaksNothing(t *testing.T) {
	e := newWebEnv(t, nil)
	e.create("wp-a", nil)
	for i := range 3 {
		e.fb.AddLog("wp-a", fmt.Sprintf("old %d", i))
	}
	// One ordinary exchange first, so that goroutines started once per
	// process are counted in the baseline; then drop the idle connection.
	e.want(e.do("GET", "/api/v1/instances", nil), http.StatusOK, nil)
	e.client.CloseIdleConnections()
	base := settledGoroutines()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, lines, errc := e.follow(ctx, "/api/v1/instances/wp-a/logs?follow=1&n=2")
	if ct := res.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q, want application/x-ndjson", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("cache control %q", cc)
	}
	for _, want := range []string{"old 1", "old 2"} {
		if l := nextLine(t, lines); l.Text != want || l.At.IsZero() {
			t.Errorf("streamed %+v, want %q with a time", l, want)
		}
	}
	// New lines arrive as they are written.
	for i := range 3 {
		want := fmt.Sprintf("live %d", i)
		e.fb.AddLog("wp-a", want)
		if l := nextLine(t, lines); l.Text != want {
			t.Errorf("streamed %q, want %q", l.Text, want)
		}
	}
	if n := e.fb.Followers(); n != 1 {
		t.Errorf("%d followers, want 1", n)
	}

	// The client hangs up: the stream ends on both sides.
	cancel()
	select {
	case <-errc:
	case <-time.After(waitTimeout):
		t.Fatal("the client's stream did not end after cancel")
	}
	for range lines {
	}
	if !eventually(waitTimeout, func() bool { return e.fb.Followers() == 0 }) {
		t.Errorf("the server still follows the log after the client left (%d followers)", e.fb.Followers())
	}
	e.client.CloseIdleConnections()
	var now int
	if !eventually(5*time.Second, func() bool { now = runtime.NumGoroutine(); return now <= base }) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d before the follow, %d after it ended; leaked:\n%s", base, now, buf)
	}
	t.Logf("goroutines: %d before the follow, %d after", base, now)
}

// Removing the instance ends its followers' streams cleanly.
func TestFollowLogsEndsWhenInstanceRemoved(t *testing.T) {
	e := newWebEnv(t, nil)
	e.create("wp-a", nil)
	e.fb.AddLog("wp-a", "hello")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, lines, errc := e.follow(ctx, "/api/v1/instances/wp-a/logs?follow=true&n=1")
	if l := nextLine(t, lines); l.Text != "hello" {
		t.Errorf("first line %q", l.Text)
	}
	if r := e.do("DELETE", "/api/v1/instances/wp-a", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the stream did not end when the instance was removed")
	}
}

// Stopping the server ends the log streams it serves: a follower must not
// keep a handler (and the backend's follow) alive after Serve returned.
func TestShutdownEndsFollowStreams(t *testing.T) {
	e := newWebEnv(t, nil)
	e.create("wp-a", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, lines, errc := e.follow(ctx, "/api/v1/instances/wp-a/logs?follow=1")
	e.fb.AddLog("wp-a", "before shutdown")
	if l := nextLine(t, lines); l.Text != "before shutdown" {
		t.Errorf("line %q", l.Text)
	}
	e.stop()
	select {
	case <-errc:
	case <-time.After(10 * time.Second): // twice Serve's shutdown grace
		t.Errorf("the log stream was still open 10s after Serve returned (the handler and the backend's follow live on until the client leaves)")
	}
	if !eventually(time.Second, func() bool { return e.fb.Followers() == 0 }) {
		t.Errorf("the backend still has %d followers after the server stopped", e.fb.Followers())
	}
}

// TestFollowLogsCappedPerUser: one user holds at most MaxFollowsPerUser log
// streams at once (each may take one of the backend's few journal readers);
// a slot is free again when a stream ends.
func TestFollowLogsCappedPerUser(t *testing.T) {
	e := newWebEnv(t, nil)
	e.create("wp-a", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancels []context.CancelFunc
	for range web.MaxFollowsPerUser {
		cctx, ccancel := context.WithCancel(ctx)
		cancels = append(cancels, ccancel)
		e.follow(cctx, "/api/v1/instances/wp-a/logs?follow=1&n=1")
	}
	if r := e.do("GET", "/api/v1/instances/wp-a/logs?follow=1&n=1", nil); r.status != http.StatusTooManyRequests {
		t.Fatalf("one stream past the cap: %s, want 429", r)
	}
	cancels[0]()
	deadline := time.Now().Add(waitTimeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/v1/instances/wp-a/logs?follow=1&n=1", nil)
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		code := res.StatusCode
		if code == http.StatusOK {
			res.Body.Close()
			break
		}
		res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the slot of an ended stream never came back: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
