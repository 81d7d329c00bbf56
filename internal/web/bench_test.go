package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/instances"
)

// BenchmarkDashboard1000 is the server time of the dashboard's HTML for an
// admin who sees 1,000 instances (target p50 <= 25 ms), beside its floor in
// the same run: the same request path (session, middleware) for an empty
// page, the account page.
func BenchmarkDashboard1000(b *testing.B) {
	e := newPanelEnvB(b)
	for i := range 1000 {
		if _, err := e.svc.Create(context.Background(), rootP, instances.CreateRequest{ID: fmt.Sprintf("site-%04d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	sess, err := e.acc.Login(context.Background(), "ann", testPassword, netipLoopback())
	if err != nil {
		b.Fatal(err)
	}
	h := e.srv.Handler()
	get := func(path string) time.Duration {
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(&http.Cookie{Name: "ikabud_session", Value: sess.Token})
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		d := time.Since(start)
		if rec.Code != 200 {
			b.Fatalf("GET %s: %d", path, rec.Code)
		}
		if path == "/" && strings.Count(rec.Body.String(), "<tr data-id=") < 1000 {
			b.Fatalf("the dashboard shows fewer than 1000 rows")
		}
		return d
	}
	var page, floor []time.Duration
	b.ResetTimer()
	for range b.N {
		page = append(page, get("/"))
		floor = append(floor, get("/account"))
	}
	b.StopTimer()
	p50, f50 := median(page), median(floor)
	b.ReportMetric(float64(p50.Microseconds())/1000, "dashboard-p50-ms")
	b.ReportMetric(float64(f50.Microseconds())/1000, "floor-p50-ms")
	b.ReportMetric(float64(p50)/float64(max(f50, 1)), "ratio")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
