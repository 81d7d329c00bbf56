package instances

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// The health watch probes every running instance's pool (FastCGI ping, and
// the master's state) every healthEvery, each instance at its own offset in
// the period so that the probes, and the workers they keep alive, are
// spread over time rather than all at once. An instance is unhealthy when
// its master is frozen (SIGSTOP) or healthFailures probes in a row fail;
// worst case from the fault to the verdict: two periods and two timeouts,
// within 10 s.
const (
	healthEvery    = 2500 * time.Millisecond
	healthSlots    = 10 // the period is cut into this many ticks
	healthTimeout  = 2 * time.Second
	healthFailures = 2
	healthParallel = 16
	// An instance the panel keeps restarting for its health is restarted
	// at most healthRestartBurst times in healthRestartWindow; after that
	// it is reported only, until it is healthy again.
	healthRestartBurst  = 3
	healthRestartWindow = 5 * time.Minute
)

// HealthState is the health watch's verdict on an instance, shown with its
// status and sent with its events.
type HealthState struct {
	Healthy bool      `json:"healthy"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitempty"`
	// Action is what the panel did about it: "restarted", "alert only",
	// "alert only: restarted 3 times in 5m0s already".
	Action string `json:"action,omitempty"`
}

// healthWatch is the per-instance state of the watch, in the entry.
type healthWatch struct {
	fails    int
	probing  bool
	state    *HealthState
	restarts []time.Time
	// pid is the master the last unhealthy verdict was about: a verdict
	// on another master (the restarted one) is a new episode.
	pid int
}

// healthSlot is the tick of the period at which id is probed.
func healthSlot(id procmgr.InstanceID) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % healthSlots)
}

// watchHealth runs the health watch until ctx ends.
func (s *Service) watchHealth(ctx context.Context) {
	t := time.NewTicker(healthEvery / healthSlots)
	defer t.Stop()
	sem := make(chan struct{}, healthParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	for tick := 0; ; tick = (tick + 1) % healthSlots {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, id := range s.dueForProbe(tick) {
			select {
			case sem <- struct{}{}:
			default:
				// Every slot busy: this one waits for its next turn.
				s.mu.Lock()
				if e, ok := s.entries[id]; ok {
					e.health.probing = false
				}
				s.mu.Unlock()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.probeOne(ctx, id)
			}()
		}
	}
}

// dueForProbe lists the running instances of this tick not being probed
// already, and marks them as being probed.
func (s *Service) dueForProbe(tick int) []procmgr.InstanceID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []procmgr.InstanceID
	for id, e := range s.entries {
		if healthSlot(id) != tick || e.health.probing || e.row.Phase != PhaseReady || e.row.DesiredState != DesiredRunning {
			continue
		}
		if e.status.State != procmgr.StateRunning {
			// Not running is the reconciler's and the backend's to
			// handle; the verdict starts again once it runs.
			e.health.fails = 0
			continue
		}
		e.health.probing = true
		ids = append(ids, id)
	}
	return ids
}

// probeOne probes one instance and acts on the verdict.
func (s *Service) probeOne(ctx context.Context, id procmgr.InstanceID) {
	pctx, cancel := context.WithTimeout(ctx, healthTimeout)
	h, err := procmgr.ProbeHealth(pctx, s.backend, s.layout, id)
	cancel()
	if ctx.Err() != nil {
		return
	}
	frozen := err == nil && h.MasterStopped
	s.mu.Lock()
	e, ok := s.entries[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	e.health.probing = false
	if err != nil {
		// The instance went away or stopped meanwhile: not the pool's
		// health.
		s.mu.Unlock()
		return
	}
	if h.Healthy {
		e.health.fails = 0
		was := e.health.state
		if was != nil && !was.Healthy {
			e.health.state = &HealthState{Healthy: true, Since: s.now()}
			s.mu.Unlock()
			s.publish(id)
			s.audit(reconcilerActor, "health", id, nil, "healthy again after: "+was.Reason)
			return
		}
		if was == nil {
			e.health.state = &HealthState{Healthy: true, Since: s.now()}
		}
		s.mu.Unlock()
		return
	}
	e.health.fails++
	if !frozen && e.health.fails < healthFailures {
		s.mu.Unlock()
		return
	}
	if e.health.state != nil && !e.health.state.Healthy && e.health.pid == e.status.MainPID {
		// Already reported for this master; a restart in flight or
		// alert only.
		s.mu.Unlock()
		return
	}
	e.health.pid = e.status.MainPID
	policy := e.spec.OnUnhealthy
	action := "alert only"
	restart := false
	if policy == procmgr.UnhealthyRestart {
		now := s.now()
		recent := e.health.restarts[:0]
		for _, t := range e.health.restarts {
			if now.Sub(t) < healthRestartWindow {
				recent = append(recent, t)
			}
		}
		e.health.restarts = recent
		if len(recent) >= healthRestartBurst {
			action = fmt.Sprintf("alert only: restarted %d times in %s already", healthRestartBurst, healthRestartWindow)
		} else {
			e.health.restarts = append(e.health.restarts, now)
			action, restart = "restarted", true
		}
	}
	e.health.state = &HealthState{Healthy: false, Reason: h.Reason, Since: s.now(), Action: action}
	e.health.fails = 0
	s.mu.Unlock()
	s.publish(id)
	s.log.Warn("instance unhealthy", "instance", string(id), "action", "health", "reason", h.Reason, "policy", string(policy), "did", action)
	if !restart {
		s.audit(reconcilerActor, "health-alert", id, nil, h.Reason)
		return
	}
	// The instance's processes are killed, and the backend's restart
	// policy starts it again at once: a stop would wait on a frozen master
	// (SIGTERM is not delivered to a stopped process until it is
	// continued) or on stuck workers, for the whole stop timeout.
	if gk, ok := s.backend.(procmgr.GroupKiller); ok {
		err = gk.KillAll(ctx, id, procmgr.SigKILL)
	} else {
		err = s.backend.Kill(ctx, id, procmgr.SigKILL)
	}
	err = mapBackendErr(err)
	s.audit(reconcilerActor, "health-restart", id, err, h.Reason)
}
