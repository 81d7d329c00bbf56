package procmgr_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
)

// These stubs test the dispatch of the optional interfaces only; every
// backend's own behaviour is procmgrtest's, against the real OS.

// starter starts one at a time and is no BatchStarter.
type starter struct {
	started []procmgr.InstanceID
	fail    procmgr.InstanceID
}

func (s *starter) Start(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	if id == s.fail {
		return procmgr.Status{}, fmt.Errorf("start %s: %w", id, procmgr.ErrNotFound)
	}
	s.started = append(s.started, id)
	return procmgr.Status{ID: id, State: procmgr.StateRunning}, nil
}

type batchStarter struct {
	starter
	batches [][]procmgr.InstanceID
}

func (b *batchStarter) StartMany(ctx context.Context, ids []procmgr.InstanceID) []error {
	b.batches = append(b.batches, ids)
	return make([]error, len(ids))
}

func TestStartAllFallsBackToOneAtATime(t *testing.T) {
	s := &starter{fail: "wp-b"}
	errs := procmgr.StartAll(t.Context(), s, []procmgr.InstanceID{"wp-a", "wp-b", "wp-c"})
	if !slices.Equal(s.started, []procmgr.InstanceID{"wp-a", "wp-c"}) {
		t.Errorf("started %v, want wp-a and wp-c in order (a failure does not stop the rest)", s.started)
	}
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], procmgr.ErrNotFound) || !strings.Contains(errs[1].Error(), "wp-b") {
		t.Errorf("errors %v, want only wp-b's, in its place", errs)
	}

	// Once ctx ends nothing more is started, and each id not tried says so.
	s = &starter{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs = procmgr.StartAll(ctx, s, []procmgr.InstanceID{"wp-a", "wp-b"})
	if len(s.started) != 0 || !errors.Is(errs[1], context.Canceled) || !strings.Contains(errs[1].Error(), "wp-b") {
		t.Errorf("after ctx ended: started %v, errors %v", s.started, errs)
	}
}

func TestStartAllUsesTheBatch(t *testing.T) {
	b := &batchStarter{}
	ids := []procmgr.InstanceID{"wp-a", "wp-b"}
	if err := errors.Join(procmgr.StartAll(t.Context(), b, ids)...); err != nil {
		t.Fatal(err)
	}
	if len(b.batches) != 1 || !slices.Equal(b.batches[0], ids) || len(b.started) != 0 {
		t.Errorf("batches %v, single starts %v; want one batch of both", b.batches, b.started)
	}
}

// statusOnly keeps no logs and probes nothing itself.
type statusOnly struct {
	st map[procmgr.InstanceID]procmgr.Status
}

func (s statusOnly) Status(ctx context.Context, id procmgr.InstanceID) (procmgr.Status, error) {
	st, ok := s.st[id]
	if !ok {
		return procmgr.Status{}, fmt.Errorf("%s: %w", id, procmgr.ErrNotFound)
	}
	return st, nil
}

type prober struct{ statusOnly }

func (prober) Health(ctx context.Context, id procmgr.InstanceID) (procmgr.Health, error) {
	return procmgr.Health{Healthy: true, Reason: "asked the prober"}, nil
}

func TestLogsFallback(t *testing.T) {
	b := statusOnly{st: map[procmgr.InstanceID]procmgr.Status{"wp-a": {ID: "wp-a"}}}
	if _, err := procmgr.ReadLogs(t.Context(), b, "wp-a", 10); !errors.Is(err, procmgr.ErrUnsupported) {
		t.Errorf("ReadLogs from a backend that keeps none: %v, want ErrUnsupported", err)
	}
	if _, err := procmgr.FollowLogs(t.Context(), b, "wp-a", 10); !errors.Is(err, procmgr.ErrUnsupported) {
		t.Errorf("FollowLogs from a backend that keeps none: %v, want ErrUnsupported", err)
	}
	if _, err := procmgr.ReadLogs(t.Context(), b, "wp-x", 10); !errors.Is(err, procmgr.ErrNotFound) {
		t.Errorf("ReadLogs of an absent instance: %v, want ErrNotFound first", err)
	}
}

func TestProbeHealth(t *testing.T) {
	l := procmgr.DefaultLayout()
	b := statusOnly{st: map[procmgr.InstanceID]procmgr.Status{"wp-a": {ID: "wp-a", State: procmgr.StateStopped}}}
	h, err := procmgr.ProbeHealth(t.Context(), b, l, "wp-a")
	if err != nil || h.Healthy || h.Reason != "no master running" || h.CheckedAt.IsZero() {
		t.Errorf("health with no master: %+v, %v", h, err)
	}
	if _, err := procmgr.ProbeHealth(t.Context(), b, l, "wp-x"); !errors.Is(err, procmgr.ErrNotFound) {
		t.Errorf("health of an absent instance: %v, want ErrNotFound", err)
	}
	if h, err := procmgr.ProbeHealth(t.Context(), prober{b}, l, "wp-a"); err != nil || h.Reason != "asked the prober" {
		t.Errorf("health from a HealthProber: %+v, %v", h, err)
	}
}

func TestClampLogLines(t *testing.T) {
	for n, want := range map[int]int{-1: procmgr.DefaultLogLines, 0: procmgr.DefaultLogLines, 7: 7, procmgr.MaxLogLines + 1: procmgr.MaxLogLines} {
		if got := procmgr.ClampLogLines(n); got != want {
			t.Errorf("ClampLogLines(%d) = %d, want %d", n, got, want)
		}
	}
}
