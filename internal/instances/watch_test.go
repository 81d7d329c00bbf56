package instances_test

import (
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
)

// A frozen master is reported unhealthy and, by the default policy, killed
// so that the backend starts it again; the verdict and the action are in
// the view (and so the events) and the audit log.
func TestUnhealthyInstanceIsRestarted(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.run()
	e.create("frozen", nil, procmgr.SpecInput{})
	ch := subscribe(t, e.svc)
	start := time.Now()
	e.fb.SetUnhealthy("frozen", "master process 42 is stopped (SIGSTOP): its workers answer, but it starts no new one")
	v := waitView(t, ch, "unhealthy verdict", func(v instances.View) bool { return v.Health != nil && !v.Health.Healthy })
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("reported unhealthy after %s, want within 10s", took)
	}
	if v.Health.Action != "restarted" || v.Health.Reason == "" {
		t.Errorf("health = %+v, want restarted with the reason", v.Health)
	}
	if err := e.fb.WaitCalls(tctx(t), fakebackend.OpKill, "frozen", 1); err != nil {
		t.Fatal(err)
	}
	// Restarted (the fake's restart policy), then healthy again.
	waitView(t, ch, "healthy again", func(v instances.View) bool { return v.Health != nil && v.Health.Healthy && v.Status.Restarts == 1 })
	e.awaitAudit("frozen", "health-restart", "ok")
	e.awaitAudit("frozen", "health", "ok")
}

// A ping that fails once is not a verdict; the alert policy reports and
// does not restart.
func TestUnhealthyAlertOnlyReports(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.run()
	e.create("stuck", nil, procmgr.SpecInput{OnUnhealthy: "alert"})
	ch := subscribe(t, e.svc)
	e.fb.SetUnhealthy("stuck", "ping: timeout after 1s")
	v := waitView(t, ch, "unhealthy verdict", func(v instances.View) bool { return v.Health != nil && !v.Health.Healthy })
	if v.Health.Action != "alert only" {
		t.Errorf("health = %+v, want alert only", v.Health)
	}
	e.awaitAudit("stuck", "health-alert", "ok")
	time.Sleep(3 * time.Second)
	if n := e.fb.CallsFor(fakebackend.OpKill, "stuck"); n != 0 {
		t.Errorf("killed %d times under the alert policy", n)
	}
}

// awaitAudit waits for an audit record the health watch writes after it
// published its verdict.
func (e *env) awaitAudit(id, action, result string) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if _, ok := findAudit(e.audit(id), action, result); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Errorf("no audit %q %q for %s in %s", action, result, id, describeAudit(e.audit(id)))
}

// A master frozen again right after its restart, before any probe saw the
// new one healthy, is a new episode: restarted again.
func TestUnhealthyAgainRightAfterARestart(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	e.run()
	e.create("twice", nil, procmgr.SpecInput{})
	for round := 1; round <= 2; round++ {
		e.fb.SetUnhealthy("twice", "master process 1 is stopped (SIGSTOP)")
		if err := e.fb.WaitCalls(tctx(t), fakebackend.OpKill, "twice", round); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}
