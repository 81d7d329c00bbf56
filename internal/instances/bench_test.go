package instances_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// benchService loads n running instances (every tenth owned by a customer)
// into a running service and returns it with the customer.
func benchService(b *testing.B, n int) (*instances.Service, auth.Principal) {
	b.Helper()
	ctx := context.Background()
	db := storetest.Open(b, store.DialectSQLite, store.Options{})
	cust := &store.User{Name: "carol", Role: string(auth.RoleCustomer)}
	if err := db.CreateUser(ctx, cust); err != nil {
		b.Fatal(err)
	}
	fb := fakebackend.New(fakebackend.Options{})
	b.Cleanup(func() { fb.Close() })
	for i := range n {
		id := fmt.Sprintf("site-%04d", i)
		spec := mustSpec(b, id, procmgr.SpecInput{})
		data, err := procmgr.MarshalSpec(spec)
		if err != nil {
			b.Fatal(err)
		}
		var owner *uint
		if i%10 == 0 {
			owner = &cust.ID
		}
		if err := db.CreateInstance(ctx, &store.Instance{ID: id, OwnerID: owner, CMS: string(spec.CMS), PHPVersion: string(spec.PHP),
			Spec: string(data), DesiredState: instances.DesiredRunning, Phase: instances.PhaseReady, Generation: 1}); err != nil {
			b.Fatal(err)
		}
		fb.Seed(spec, procmgr.StateRunning)
	}
	svc := instances.New(db, fb, instances.Options{Layout: procmgr.DefaultLayout(), Log: procmgrtest.Logger(b, slog.LevelDebug)})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-svc.Started():
	case err := <-done:
		b.Fatalf("Run: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := svc.WaitIdle(wctx); err != nil {
		b.Fatal(err)
	}
	if got := len(svc.List(ctx, root)); got != n {
		b.Fatalf("loaded %d instances, want %d", got, n)
	}
	return svc, auth.Principal{UserID: cust.ID, Name: cust.Name, Role: auth.RoleCustomer}
}

func BenchmarkList1000(b *testing.B) {
	svc, cust := benchService(b, 1000)
	ctx := context.Background()
	b.Run("admin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(svc.List(ctx, root)) != 1000 {
				b.Fatal("short list")
			}
		}
	})
	b.Run("customer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(svc.List(ctx, cust)) != 100 {
				b.Fatal("wrong list")
			}
		}
	})
}

func BenchmarkGet(b *testing.B) {
	svc, _ := benchService(b, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.Get(ctx, root, "site-0500"); err != nil {
			b.Fatal(err)
		}
	}
}
