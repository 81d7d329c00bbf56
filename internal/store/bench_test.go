package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// BenchmarkListInstances1000 lists 1000 instances from SQLite, as the panel does at start-up
// and on an admin's dashboard.
func BenchmarkListInstances1000(b *testing.B) {
	ctx := context.Background()
	db := storetest.Open(b, store.DialectSQLite, store.Options{})
	rows := make([]store.Instance, 1000)
	for i := range rows {
		rows[i] = *newInstance(fmt.Sprintf("wp-%04d", i), nil)
	}
	if err := db.Gorm().WithContext(ctx).CreateInBatches(rows, 100).Error; err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		list, err := db.ListInstances(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(list) != 1000 {
			b.Fatalf("listed %d instances, want 1000", len(list))
		}
	}
}
