package instances_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

func TestCreate(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ann := e.user("ann", auth.RoleAdmin)
		cust := e.user("carol", auth.RoleCustomer)
		in := procmgr.SpecInput{CMS: "wordpress", MaxChildren: "7", Env: []string{"APP_ENV=prod"}}

		v, err := e.svc.Create(tctx(t), ann, instances.CreateRequest{ID: "wp-test-001", OwnerID: &cust.UserID, Spec: in})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if v.ID != "wp-test-001" || v.Phase != instances.PhaseReady || v.Desired != instances.DesiredRunning {
			t.Errorf("view id %q phase %q desired %q, want wp-test-001 ready running", v.ID, v.Phase, v.Desired)
		}
		if v.Status.State != procmgr.StateRunning || v.Status.MainPID < fakebackend.FirstPID {
			t.Errorf("view status %s pid %d, want running with a PID", v.Status.State, v.Status.MainPID)
		}
		if v.OwnerID == nil || *v.OwnerID != cust.UserID {
			t.Errorf("view owner %v, want %d", v.OwnerID, cust.UserID)
		}
		if v.CMS != "wordpress" || v.PHP != "8.2" || v.User != "ikabud-wp-test-001" {
			t.Errorf("view cms %q php %q user %q", v.CMS, v.PHP, v.User)
		}
		if v.Socket != procmgr.DefaultLayout().SocketPath("wp-test-001") {
			t.Errorf("view socket %q", v.Socket)
		}
		if v.Spec.MaxChildren != "7" || v.Spec.MemoryMax != "512M" || len(v.Spec.Env) != 1 || v.Spec.Env[0] != "APP_ENV=prod" {
			t.Errorf("view spec %+v, want max_children 7, default memory_max, the env", v.Spec)
		}

		row := e.row("wp-test-001")
		if row.Phase != instances.PhaseReady || row.DesiredState != instances.DesiredRunning || row.LastError != "" {
			t.Errorf("row phase %q desired %q error %q, want ready running and no error", row.Phase, row.DesiredState, row.LastError)
		}
		if row.OwnerID == nil || *row.OwnerID != cust.UserID || row.CMS != "wordpress" || row.PHPVersion != "8.2" {
			t.Errorf("row owner %v cms %q php %q", row.OwnerID, row.CMS, row.PHPVersion)
		}
		stored, err := procmgr.UnmarshalSpec(row.ID, []byte(row.Spec))
		if err != nil {
			t.Fatalf("stored spec: %v", err)
		}
		if got, _ := e.fb.Spec("wp-test-001"); got.Pool != stored.Pool || got.Limits != stored.Limits || got.CMS != stored.CMS {
			t.Errorf("stored spec %+v differs from the provisioned %+v", stored, got)
		}

		got, err := e.svc.Get(tctx(t), root, "wp-test-001")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.MainPID != v.Status.MainPID || got.Status.State != procmgr.StateRunning {
			t.Errorf("get: state %s pid %d, want running pid %d", got.Status.State, got.Status.MainPID, v.Status.MainPID)
		}
		if n := e.fb.CallsFor(fakebackend.OpProvision, "wp-test-001"); n != 1 {
			t.Errorf("provision called %d times, want 1", n)
		}

		ev := e.wantAudit("wp-test-001", "create", "ok", "ann")
		if ev.ActorID == nil || *ev.ActorID != ann.UserID {
			t.Errorf("audit actor id %v, want %d", ev.ActorID, ann.UserID)
		}
		if ev.At.IsZero() {
			t.Errorf("audit has no time")
		}

		// Root has no user row: the audit names root without an id.
		e.create("plain", nil, procmgr.SpecInput{})
		if ev := e.wantAudit("plain", "create", "ok", "root"); ev.ActorID != nil {
			t.Errorf("root's audit actor id %v, want nil", *ev.ActorID)
		}
		if list := e.svc.List(tctx(t), root); len(list) != 2 || list[0].ID != "plain" || list[1].ID != "wp-test-001" {
			t.Errorf("list %v, want plain and wp-test-001 in order", viewIDs(list))
		}
	})
}

func TestCreateInvalidSpec(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		for _, tc := range []struct {
			name, id string
			in       procmgr.SpecInput
			field    string
		}{
			{"bad id", "Bad_ID", procmgr.SpecInput{}, "id"},
			{"empty id", "", procmgr.SpecInput{}, "id"},
			{"too many children", "wp-a", procmgr.SpecInput{MaxChildren: "0"}, "max_children"},
			{"php not installed", "wp-a", procmgr.SpecInput{PHP: "7.4"}, "php"},
			{"unknown cms", "wp-a", procmgr.SpecInput{CMS: "typo3"}, "cms"},
			{"reserved env", "wp-a", procmgr.SpecInput{Env: []string{"PATH=/tmp"}}, "env"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: tc.id, Spec: tc.in})
				if !errors.Is(err, instances.ErrInvalid) {
					t.Fatalf("create: %v, want ErrInvalid", err)
				}
				var fes procmgr.FieldErrors
				if !errors.As(err, &fes) || len(fes) == 0 || fes[0].Field != tc.field {
					t.Errorf("create: %v, want a field error on %s", err, tc.field)
				}
			})
		}
		rows, err := e.db.ListInstances(tctx(t))
		if err != nil || len(rows) != 0 {
			t.Errorf("rows after invalid creates: %d, %v; want none", len(rows), err)
		}
		if n := e.fb.TotalCalls(); n != 0 {
			t.Errorf("backend called %d times for invalid specs: %+v", n, e.fb.History())
		}
		if list := e.svc.List(tctx(t), root); len(list) != 0 {
			t.Errorf("list %v, want empty", viewIDs(list))
		}
	})
}

func TestCreateDuplicate(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		first := e.create("dup", nil, procmgr.SpecInput{})
		_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "dup", Spec: procmgr.SpecInput{MaxChildren: "9"}})
		isErr(t, err, instances.ErrConflict, "second create")
		if n := e.fb.CallsFor(fakebackend.OpProvision, "dup"); n != 1 {
			t.Errorf("provision called %d times, want 1", n)
		}
		if n := e.fb.Calls(fakebackend.OpDeprovision); n != 0 {
			t.Errorf("a refused duplicate deprovisioned the existing instance (%d calls)", n)
		}
		v, err := e.svc.Get(tctx(t), root, "dup")
		if err != nil || v.Spec.MaxChildren != "5" || v.Status.MainPID != first.Status.MainPID {
			t.Errorf("existing instance changed by the duplicate: %+v, %v", v.Spec, err)
		}
		e.wantAudit("dup", "create", "error", "root")
	})
}

func TestCreateDuplicateOfRowNotInMemory(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		// A row whose spec no longer validates is not loaded, but its id
		// is still taken in the database.
		e.storeRawRow(&store.Instance{ID: "ghost", CMS: "php", PHPVersion: "8.2", Spec: `{"memory_limit":"lots"}`,
			DesiredState: "running", Phase: "ready"})
		e.run()
		_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "ghost"})
		isErr(t, err, instances.ErrConflict, "create over an unloaded row")
		if n := e.fb.TotalCalls(); n != 0 {
			t.Errorf("backend called: %+v", e.fb.History())
		}
		if _, err := e.svc.Get(tctx(t), root, "ghost"); !errors.Is(err, instances.ErrNotFound) {
			t.Errorf("get after refused create: %v, want ErrNotFound", err)
		}
		if r := e.row("ghost"); r.Spec != `{"memory_limit":"lots"}` {
			t.Errorf("refused create changed the stored row: %q", r.Spec)
		}
	})
}

func TestCreateConcurrentSameID(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		const n = 8
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "race"})
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, instances.ErrConflict):
				t.Errorf("a losing create: %v, want ErrConflict", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d creates succeeded, want exactly 1", ok)
		}
		if c := e.fb.CallsFor(fakebackend.OpProvision, "race"); c != 1 {
			t.Errorf("provision called %d times, want 1", c)
		}
		if c := e.fb.Calls(fakebackend.OpDeprovision); c != 0 {
			t.Errorf("deprovision called %d times by losing creates, want 0", c)
		}
		e.row("race")
		if v, err := e.svc.Get(tctx(t), root, "race"); err != nil || v.Phase != instances.PhaseReady {
			t.Errorf("get: %+v, %v", v.Phase, err)
		}
	})
}

func TestCreateWhileFirstIsProvisioning(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		entered, release := e.fb.Hold(fakebackend.OpProvision)
		defer release()
		done := make(chan error, 1)
		go func() {
			_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "slow"})
			done <- err
		}()
		select {
		case <-entered:
		case err := <-done:
			t.Fatalf("first create ended before provisioning: %v", err)
		}
		// The id is reserved while the first create is in flight.
		_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "slow"})
		isErr(t, err, instances.ErrConflict, "create during another create")
		v, err := e.svc.Get(tctx(t), root, "slow")
		if err != nil || v.Phase != instances.PhaseProvisioning || v.Status.State != procmgr.StateProvisioning {
			t.Errorf("get during create: phase %q state %q, %v; want provisioning", v.Phase, v.Status.State, err)
		}
		release()
		if err := <-done; err != nil {
			t.Fatalf("first create: %v", err)
		}
		if c := e.fb.CallsFor(fakebackend.OpProvision, "slow"); c != 1 {
			t.Errorf("provision called %d times, want 1", c)
		}
	})
}

func TestCreateProvisionFails(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		views := subscribe(t, e.svc)
		e.fb.FailNext(fakebackend.OpProvision, errors.New("php-fpm did not answer a ping"))
		_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "broken"})
		if err == nil {
			t.Fatal("create succeeded although provisioning failed")
		}
		for _, s := range []error{instances.ErrConflict, instances.ErrNotFound, instances.ErrInvalid, instances.ErrForbidden} {
			if errors.Is(err, s) {
				t.Errorf("create: %v matches %v; a backend failure is none of the sentinels", err, s)
			}
		}
		e.rowGone("broken")
		if list := e.svc.List(tctx(t), root); len(list) != 0 {
			t.Errorf("list after failed create: %v", viewIDs(list))
		}
		if _, err := e.svc.Get(tctx(t), root, "broken"); !errors.Is(err, instances.ErrNotFound) {
			t.Errorf("get after failed create: %v, want ErrNotFound", err)
		}
		if c := e.fb.CallsFor(fakebackend.OpDeprovision, "broken"); c != 1 {
			t.Errorf("deprovision called %d times to roll back, want 1", c)
		}
		ev := e.wantAudit("broken", "create", "error", "root")
		if ev.Detail == "" || !strings.Contains(ev.Detail, "ping") {
			t.Errorf("audit detail %q, want the backend's error", ev.Detail)
		}
		// Subscribers learn the instance is gone.
		waitView(t, views, "broken removed", func(v instances.View) bool {
			return v.ID == "broken" && v.Phase == "removed" && v.Status.State == procmgr.StateAbsent
		})

		// The id is free again.
		if v := e.create("broken", nil, procmgr.SpecInput{}); v.Status.State != procmgr.StateRunning {
			t.Errorf("second create: %s", v.Status.State)
		}

		// A clash on the host maps to ErrConflict, and is rolled back too.
		e.fb.FailNext(fakebackend.OpProvision, procmgr.ErrConflict)
		_, err = e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "clash"})
		isErr(t, err, instances.ErrConflict, "create with a host clash")
		e.rowGone("clash")
	})
}

// A create whose owner names no user is a bad request (422), not a server
// error, and leaves nothing behind.
func TestCreateUnknownOwner(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		_, err := e.svc.Create(tctx(t), root, instances.CreateRequest{ID: "orphan", OwnerID: ptr(uint(99999))})
		if err == nil {
			t.Fatal("create with an unknown owner succeeded")
		}
		if !errors.Is(err, instances.ErrInvalid) {
			t.Errorf("create with an unknown owner: %v; want an error matching instances.ErrInvalid (the store says store.ErrInvalid, which the web layer would serve as 500)", err)
		}
		if n := e.fb.TotalCalls(); n != 0 {
			t.Errorf("backend called: %+v", e.fb.History())
		}
		if list := e.svc.List(tctx(t), root); len(list) != 0 {
			t.Errorf("list: %v", viewIDs(list))
		}
	})
}

func TestCreateForbidden(t *testing.T) {
	e := newEnv(t, store.DialectSQLite)
	for _, p := range []auth.Principal{
		e.user("cus", auth.RoleCustomer), e.user("sup", auth.RoleSupport), {Name: "nobody"},
	} {
		_, err := e.svc.Create(tctx(t), p, instances.CreateRequest{ID: "nope"})
		isErr(t, err, instances.ErrForbidden, "create by "+string(p.Role))
	}
	if n := e.fb.TotalCalls(); n != 0 {
		t.Errorf("backend called: %+v", e.fb.History())
	}
	e.rowGone("nope")
}

func viewIDs(vs []instances.View) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	return out
}
