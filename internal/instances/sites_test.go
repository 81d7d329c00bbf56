package instances_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// frontDoor records the sites the service publishes; fail makes the next
// Publish fail, as nginx -t refusing a config would.
type frontDoor struct {
	mu    sync.Mutex
	sites map[procmgr.InstanceID][]procmgr.Domain
	fail  error
	calls []string
}

func (f *frontDoor) Publish(_ context.Context, s procmgr.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "publish "+string(s.ID))
	if f.fail != nil {
		err := f.fail
		f.fail = nil
		return err
	}
	f.sites[s.ID] = s.Domains
	return nil
}

func (f *frontDoor) Withdraw(_ context.Context, id procmgr.InstanceID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "withdraw "+string(id))
	delete(f.sites, id)
	return nil
}

func (f *frontDoor) Sync(_ context.Context, specs []procmgr.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "sync")
	clear(f.sites)
	for _, s := range specs {
		f.sites[s.ID] = s.Domains
	}
	return nil
}

func (f *frontDoor) Probe(context.Context, procmgr.Spec) procmgr.HTTPProbe {
	return procmgr.HTTPProbe{OK: true}
}

func (f *frontDoor) Up(context.Context) (bool, string) { return true, "fake" }

func (f *frontDoor) AccessLog(procmgr.InstanceID, time.Time, int) ([]string, error) { return nil, nil }

func (f *frontDoor) domains(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ds, ok := f.sites[procmgr.InstanceID(id)]
	if !ok {
		return "(no site)"
	}
	var out []string
	for _, d := range ds {
		out = append(out, string(d))
	}
	return strings.Join(out, " ")
}

func newSitesEnv(t *testing.T) (*env, *frontDoor) {
	t.Helper()
	db := storetest.Open(t, store.DialectSQLite, store.Options{})
	fb := fakebackend.New(fakebackend.Options{})
	t.Cleanup(func() { fb.Close() })
	fd := &frontDoor{sites: map[procmgr.InstanceID][]procmgr.Domain{}}
	svc := instances.New(db, fb, instances.Options{Layout: procmgr.DefaultLayout(), FrontDoor: fd, Log: procmgrtest.Logger(t, slog.LevelDebug)})
	e := &env{t: t, db: db, fb: fb, svc: svc}
	e.run()
	return e, fd
}

func domainsErr(t *testing.T, err error, value string) {
	t.Helper()
	var fes procmgr.FieldErrors
	if !errors.As(err, &fes) || len(fes) != 1 || fes[0].Field != "domains" || fes[0].Value != value {
		t.Fatalf("error %v, want one domains error for %q", err, value)
	}
}

func TestDomainsAreUniqueAcrossInstances(t *testing.T) {
	e, fd := newSitesEnv(t)
	e.create("a", nil, procmgr.SpecInput{Domains: []string{"a.example.test", "shop.example.test"}})
	if got := fd.domains("a"); got != "a.example.test shop.example.test" {
		t.Errorf("published %q", got)
	}
	// Another create naming a domain of a: refused, nothing recorded.
	_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "b", Spec: procmgr.SpecInput{Domains: []string{"b.example.test", "shop.example.test"}}})
	domainsErr(t, err, "shop.example.test")
	e.rowGone("b")
	e.create("b", nil, procmgr.SpecInput{Domains: []string{"b.example.test"}})
	// A set taking a's domain: refused, b keeps its own.
	_, err = e.svc.Set(tctx(t), root, "b", procmgr.SpecInput{Domains: []string{"a.example.test"}})
	domainsErr(t, err, "a.example.test")
	if got := fd.domains("b"); got != "b.example.test" {
		t.Errorf("b's site after a refused set: %q", got)
	}
	// set --domain replaces the list; the freed name can be taken.
	if _, err := e.svc.Set(tctx(t), root, "a", procmgr.SpecInput{Domains: []string{"a.example.test"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Set(tctx(t), root, "b", procmgr.SpecInput{Domains: []string{"b.example.test", "shop.example.test"}}); err != nil {
		t.Fatalf("taking a freed domain: %v", err)
	}
	if got := fd.domains("b"); got != "b.example.test shop.example.test" {
		t.Errorf("b's site = %q", got)
	}
	e.wantAudit("b", "set", "ok", "root")
	// A removed instance's domains are free again, and its site withdrawn.
	if err := e.svc.Remove(tctx(t), root, "a", true); err != nil {
		t.Fatal(err)
	}
	if got := fd.domains("a"); got != "(no site)" {
		t.Errorf("a's site after remove = %q", got)
	}
	e.create("c", nil, procmgr.SpecInput{Domains: []string{"a.example.test"}})
}

// Two creates racing for one domain: exactly one gets it.
func TestConcurrentCreatesCannotShareADomain(t *testing.T) {
	e, _ := newSitesEnv(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "racer-" + string(rune('a'+i)), Spec: procmgr.SpecInput{Domains: []string{"contested.example.test"}}})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, procmgr.ErrInvalid) {
			t.Errorf("loser's error %v, want a domains error", err)
		}
	}
	if won != 1 {
		t.Errorf("%d creates got the domain, want 1", won)
	}
}

func TestFailedPublishUndoesTheChange(t *testing.T) {
	e, fd := newSitesEnv(t)
	// A create whose site is refused is rolled back whole.
	fd.mu.Lock()
	fd.fail = errors.New("nginx -t: refused")
	fd.mu.Unlock()
	_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "a", Spec: procmgr.SpecInput{Domains: []string{"a.example.test"}}})
	if err == nil || !strings.Contains(err.Error(), "nginx -t: refused") {
		t.Fatalf("create = %v, want the front door's refusal", err)
	}
	e.rowGone("a")
	if st := e.fb.State("a"); st != procmgr.StateAbsent {
		t.Errorf("backend state %s after a refused site, want absent", st)
	}
	// A set whose site is refused keeps the stored spec and the old site.
	e.create("b", nil, procmgr.SpecInput{Domains: []string{"b.example.test"}})
	fd.mu.Lock()
	fd.fail = errors.New("nginx -t: refused again")
	fd.mu.Unlock()
	if _, err := e.svc.Set(tctx(t), root, "b", procmgr.SpecInput{Domains: []string{"new.example.test"}}); err == nil {
		t.Fatal("set succeeded though its site was refused")
	}
	v, _ := e.svc.Get(tctx(t), root, "b")
	if strings.Join(v.Spec.Domains, " ") != "b.example.test" || fd.domains("b") != "b.example.test" {
		t.Errorf("after a refused set: spec %v, site %q", v.Spec.Domains, fd.domains("b"))
	}
	e.wantAudit("b", "set", "error", "root")
	// The name the refused set asked for is not held.
	e.create("c", nil, procmgr.SpecInput{Domains: []string{"new.example.test"}})
}
