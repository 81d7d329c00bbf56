package live

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

// Sample is one usage figure of an instance, as the charts plot it.
type Sample struct {
	At  int64   `json:"t"`   // unix ms
	Mem uint64  `json:"mem"` // bytes
	CPU float64 `json:"cpu"` // % of one CPU since the previous figure; -1 unknown
}

// Usage history bounds: one sample per sampleEvery slot, kept for
// historySpan (180 samples at most).
const (
	sampleEvery = 5 * time.Second
	historySpan = 15 * time.Minute
	maxHistory  = int(historySpan / sampleEvery)
	// minRateWindow is the shortest interval a CPU rate is computed over:
	// two views a few ms apart (a state change right after a usage
	// event) would give a meaningless figure.
	minRateWindow = time.Second
	// healthTimeout bounds one health probe.
	healthTimeout = 3 * time.Second
)

// tracker keeps, per instance, what the rows show beside the service's
// view: the CPU rate between usage figures, the usage history and the last
// health probe.
type tracker struct {
	mu   sync.Mutex
	inst map[string]*usage
}

type usage struct {
	running bool
	pid     int
	baseCPU time.Duration // CPU time at baseAt, the start of the rate window
	baseAt  time.Time
	cpu     float64 // -1 unknown
	samples []Sample
	slot    int64 // sampleEvery slot of the last sample
	health  viewmodel.Health
}

func newTracker() *tracker { return &tracker{inst: map[string]*usage{}} }

// isRunning mirrors viewmodel.NewRow: usage and health only mean something
// while a master runs.
func isRunning(st procmgr.Status) bool {
	return st.MainPID > 1 && (st.State == procmgr.StateRunning || st.State == procmgr.StateReloading || st.State == procmgr.StateStarting)
}

// observe takes a view received at now. It returns the sample it recorded
// (at most one per sampleEvery slot, only while running) and whether the
// instance just started running. A removed instance's state is dropped.
func (t *tracker) observe(v instances.View, now time.Time) (s Sample, recorded, started bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v.Phase == phaseRemoved {
		delete(t.inst, v.ID)
		return s, false, false
	}
	u := t.inst[v.ID]
	if u == nil {
		u = &usage{cpu: -1}
		t.inst[v.ID] = u
	}
	st := v.Status
	if !isRunning(st) {
		u.running, u.pid, u.cpu, u.baseAt = false, 0, -1, time.Time{}
		return s, false, false
	}
	started = !u.running
	if started {
		u.health = viewmodel.Health{} // the last run's probe says nothing now
	}
	u.running = true
	switch {
	case u.pid != st.MainPID || u.baseAt.IsZero() || st.CPUUsage < u.baseCPU:
		// A new master (or counters reset): start a new rate window.
		u.pid, u.baseCPU, u.baseAt, u.cpu = st.MainPID, st.CPUUsage, now, -1
	case now.Sub(u.baseAt) >= minRateWindow:
		u.cpu = float64(st.CPUUsage-u.baseCPU) / float64(now.Sub(u.baseAt)) * 100
		u.baseCPU, u.baseAt = st.CPUUsage, now
	}
	slot := now.UnixMilli() / sampleEvery.Milliseconds()
	if len(u.samples) > 0 && slot <= u.slot {
		return s, false, started
	}
	u.slot = slot
	s = Sample{At: now.UnixMilli(), Mem: st.MemoryBytes, CPU: u.cpu}
	cutoff := now.Add(-historySpan).UnixMilli()
	drop := 0
	for drop < len(u.samples) && (u.samples[drop].At < cutoff || len(u.samples)-drop >= maxHistory) {
		drop++
	}
	u.samples = append(u.samples[:0], u.samples[drop:]...)
	u.samples = append(u.samples, s)
	return s, true, started
}

func (t *tracker) extra(id string) viewmodel.Extra {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.inst[id]
	if u == nil {
		return viewmodel.Extra{CPUPercent: -1}
	}
	return viewmodel.Extra{Health: u.health, CPUPercent: u.cpu}
}

func (t *tracker) history(id string) []Sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.inst[id]
	if u == nil || len(u.samples) == 0 {
		return nil
	}
	return append([]Sample(nil), u.samples...)
}

// running lists the instances to probe.
func (t *tracker) running() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, u := range t.inst {
		if u.running {
			ids = append(ids, id)
		}
	}
	return ids
}

func (t *tracker) isRunning(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.inst[id]
	return u != nil && u.running
}

// setHealth records a probe of an instance that still runs; it reports
// whether it did.
func (t *tracker) setHealth(id string, h viewmodel.Health) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.inst[id]
	if u == nil || !u.running {
		return false
	}
	u.health = h
	return true
}

// healthLoop probes every running instance every HealthEvery, and at once
// one that just started or whose page was opened, HealthConcurrency at a
// time. A new result
// re-publishes the instance's row through the hub.
func (h *Hub) healthLoop(ctx context.Context) {
	tick := time.NewTicker(h.opt.HealthEvery)
	defer tick.Stop()
	sem := make(chan struct{}, h.opt.HealthConcurrency)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inflight = map[string]bool{}
	)
	defer wg.Wait()
	probe := func(id string) {
		if !h.track.isRunning(id) {
			return
		}
		mu.Lock()
		busy := inflight[id]
		inflight[id] = true
		mu.Unlock()
		if busy {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				<-sem
				mu.Lock()
				delete(inflight, id)
				mu.Unlock()
			}()
			h.probe(ctx, id)
		}()
	}
	round := func() {
		for _, id := range h.track.running() {
			if ctx.Err() != nil {
				return
			}
			probe(id)
		}
	}
	round()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			round()
		case id := <-h.probeNow:
			probe(id)
		}
	}
}

func (h *Hub) probe(ctx context.Context, id string) {
	pctx, cancel := context.WithTimeout(ctx, healthTimeout)
	res, err := h.src.Health(pctx, h.opt.System, id)
	cancel()
	if ctx.Err() != nil || errors.Is(err, instances.ErrNotFound) {
		return
	}
	hv := healthOf(res)
	if err != nil {
		h.log.Debug("live: health probe failed", "instance", id, "err", err)
		hv = viewmodel.Health{Known: true, Reason: "probe failed", At: h.opt.Now()}
	}
	if !h.track.setHealth(id, hv) {
		return
	}
	select {
	case h.refresh <- id:
	case <-ctx.Done():
	}
}

func healthOf(res procmgr.Health) viewmodel.Health {
	return viewmodel.Health{Known: true, Healthy: res.Healthy, Reason: res.Reason, Latency: res.PingLatency, At: res.CheckedAt}
}

// NoteHealth records a probe somebody else made (an instance page, which
// probes its instance as it renders), so the hub need not probe again; the
// instance's row goes out with it. It never blocks: if the hub is busy, the
// next change of the instance carries the result.
func (h *Hub) NoteHealth(id string, res procmgr.Health) {
	if !h.track.setHealth(id, healthOf(res)) {
		return
	}
	select {
	case h.refresh <- id:
	default:
	}
}
