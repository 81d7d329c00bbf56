package live

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

// benchConns dials n admin sockets on query; each gets a reader goroutine
// calling onMsg (which must be cheap: all clients share the process with
// the server).
func benchConns(b *testing.B, url string, n int, onMsg func(i int, msg []byte)) []*websocket.Conn {
	b.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := d.Dial(url, http.Header{"Origin": {"http://panel.test"}})
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		conns[i] = c
		go func() {
			for {
				_, m, err := c.ReadMessage()
				if err != nil {
					return
				}
				if onMsg != nil {
					onMsg(i, m)
				}
			}
		}()
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// restartsOf reads the restarts field of a row message without decoding it
// all; -1 when m is not a row.
func restartsOf(m []byte) int {
	if !bytes.HasPrefix(m, []byte(`{"type":"row"`)) {
		return -1
	}
	const key = `"restarts":`
	i := bytes.Index(m, []byte(key))
	if i < 0 {
		return -1
	}
	m = m[i+len(key):]
	j := bytes.IndexByte(m, ',')
	n, err := strconv.Atoi(string(m[:j]))
	if err != nil {
		return -1
	}
	return n
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(float64(len(s))*p))]) / float64(time.Millisecond)
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

const mib = 1 << 20

// BenchmarkRowFanout1000 measures one state change reaching 1,000 connected
// dashboard sockets over loopback: from publish to each socket (p50, p99)
// and to the last one (p50, p99). The floor is the same fan-out of the same
// bytes over plain Go channels to 1,000 goroutines.
func BenchmarkRowFanout1000(b *testing.B) {
	const clients = 1000
	src := newFakeSource()
	src.set(view("x", nil, procmgr.StateRunning, 10))
	e := newEnv(b, src, Options{MaxPerUser: 2 * clients, HealthEvery: time.Hour})

	var (
		published atomic.Int64 // unix ns of the publish being measured
		want      atomic.Int64 // its restarts value
		got       atomic.Int64
		done      = make(chan struct{}, 1)
		mu        sync.Mutex
		each      []time.Duration
	)
	benchConns(b, e.url("who=admin"), clients, func(_ int, m []byte) {
		if int64(restartsOf(m)) != want.Load() {
			return
		}
		d := time.Duration(time.Now().UnixNano() - published.Load())
		mu.Lock()
		each = append(each, d)
		mu.Unlock()
		if got.Add(1) == clients {
			done <- struct{}{}
		}
	})
	var last []time.Duration
	v := src.get("x")
	for b.Loop() {
		v.Status.Restarts++
		got.Store(0)
		want.Store(int64(v.Status.Restarts))
		start := time.Now()
		published.Store(start.UnixNano())
		src.set(v)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("%d of %d sockets got the change", got.Load(), clients)
		}
		last = append(last, time.Since(start))
	}
	b.StopTimer()
	row, _ := e.hub.rowBytesForBench(v)
	chanFloor := channelFanout(clients, 200, row)
	wsFloor := bareWebsocketFanout(b, clients, 50, row)
	b.ReportMetric(pct(each, 0.50), "each-p50-ms")
	b.ReportMetric(pct(each, 0.99), "each-p99-ms")
	b.ReportMetric(pct(last, 0.50), "last-p50-ms")
	b.ReportMetric(pct(last, 0.99), "last-p99-ms")
	b.ReportMetric(pct(chanFloor, 0.50), "chan-floor-last-p50-ms")
	b.ReportMetric(pct(wsFloor, 0.50), "ws-floor-last-p50-ms")
	b.ReportMetric(pct(wsFloor, 0.99), "ws-floor-last-p99-ms")
	b.ReportMetric(pct(last, 0.50)/pct(wsFloor, 0.50), "last-p50/ws-floor")
}

// rowBytesForBench renders the row message of v as the hub sends it.
func (h *Hub) rowBytesForBench(v instances.View) ([]byte, error) {
	vs := variants{h: h, v: v, x: h.track.extra(v.ID), now: h.opt.Now()}
	return vs.bytes(viewmodel.PermsFor(h.opt.System, v)), nil
}

// bareWebsocketFanout is the floor of the same fan-out over websockets: a
// bare gorilla server with one writer goroutine per socket fed by a channel,
// and the same clients; it returns the time of each round until the last
// client got it.
func bareWebsocketFanout(b *testing.B, n, rounds int, msg []byte) []time.Duration {
	var (
		mu    sync.Mutex
		feeds []chan []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		feed := make(chan []byte, 1)
		mu.Lock()
		feeds = append(feeds, feed)
		mu.Unlock()
		for m := range feed {
			if err := c.WriteMessage(websocket.TextMessage, m); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	var got atomic.Int64
	done := make(chan struct{}, 1)
	conns := benchConns(b, "ws"+srv.URL[len("http"):], n, func(int, []byte) {
		if got.Add(1) == int64(n) {
			done <- struct{}{}
		}
	})
	if !eventually(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(feeds) == n }) {
		b.Fatal("bare server: not every socket arrived")
	}
	out := make([]time.Duration, 0, rounds)
	for range rounds {
		got.Store(0)
		start := time.Now()
		for _, f := range feeds {
			f <- msg
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("bare fan-out: %d of %d", got.Load(), n)
		}
		out = append(out, time.Since(start))
	}
	for _, f := range feeds {
		close(f)
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}

// channelFanout is the floor of the fan-out: rounds sends of a row's bytes
// to n goroutines over buffered channels; it returns the time of each
// round until the last goroutine got it.
func channelFanout(n, rounds int, msg []byte) []time.Duration {
	chans := make([]chan []byte, n)
	var got atomic.Int64
	done := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan []byte, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range chans[i] {
				if len(m) > 0 && got.Add(1) == int64(n) {
					done <- struct{}{}
				}
			}
		}()
	}
	out := make([]time.Duration, 0, rounds)
	for range rounds {
		got.Store(0)
		start := time.Now()
		for _, c := range chans {
			c <- msg
		}
		<-done
		out = append(out, time.Since(start))
	}
	for _, c := range chans {
		close(c)
	}
	wg.Wait()
	return out
}

// BenchmarkLogFlood100 has one instance log 10,000 lines/s for 3 s, followed
// by 100 sockets: lines received and skipped per socket, and the heap in use
// at the start and the end (flat: queues are bounded). The floor is what
// was emitted: received/emitted says how much of it each socket got.
func BenchmarkLogFlood100(b *testing.B) {
	const (
		clients = 100
		rate    = 10000
		secs    = 3
		total   = rate * secs
	)
	src := newFakeSource()
	src.set(view("x", nil, procmgr.StateRunning, 10))
	e := newEnv(b, src, Options{MaxPerUser: 2 * clients, HealthEvery: time.Hour})
	var (
		lines, skippedN [clients]atomic.Int64
		finished        atomic.Int64
		seqKey          = []byte(`{"seq":`)
		lastKey         = []byte(`{"seq":` + strconv.Itoa(total) + `,`)
	)
	benchConns(b, e.url("who=admin&instance=x"), clients, func(i int, m []byte) {
		switch {
		case bytes.HasPrefix(m, []byte(`{"type":"logs"`)):
			lines[i].Add(int64(bytes.Count(m, seqKey)))
			if bytes.Contains(m, lastKey) {
				finished.Add(1)
			}
		case bytes.HasPrefix(m, []byte(`{"type":"skipped"`)):
			var s skippedMsg
			if json.Unmarshal(m, &s) == nil {
				skippedN[i].Add(int64(s.Count))
			}
		}
	})
	if !eventually(10*time.Second, func() bool { return src.followCalls("x") == 1 && src.lastFollow("x") != nil }) {
		b.Fatal("no follow")
	}
	text := "PHP Warning:  Undefined variable $x in /var/www/site/wp-content/plugins/p/p.php on line 42"
	var heapStart, heapEnd uint64
	for b.Loop() {
		heapStart = heapInuse()
		tick := time.NewTicker(10 * time.Millisecond)
		for sent := 0; sent < total; {
			<-tick.C
			for range rate / 100 {
				src.emit("x", text)
				sent++
			}
		}
		tick.Stop()
		if !eventually(10*time.Second, func() bool { return finished.Load() == clients }) {
			b.Logf("only %d of %d sockets got the last line", finished.Load(), clients)
		}
		heapEnd = heapInuse()
	}
	var recv, skip int64
	for i := range clients {
		recv += lines[i].Load()
		skip += skippedN[i].Load()
	}
	b.ReportMetric(float64(recv)/clients, "lines/client")
	b.ReportMetric(float64(skip)/clients, "skipped/client")
	b.ReportMetric(float64(recv)/clients/total, "received/emitted")
	b.ReportMetric(float64(heapStart)/mib, "heap-start-MiB")
	b.ReportMetric(float64(heapEnd)/mib, "heap-end-MiB")
}

// BenchmarkIdleClients1000 measures the heap in use with 1,000 idle
// connected dashboard sockets (client and server sides are both in this
// process). The floor is the same 1,000 connections to a bare gorilla
// server that only reads.
func BenchmarkIdleClients1000(b *testing.B) {
	const clients = 1000
	measure := func(url string) float64 {
		base := settledGoroutines()
		before := heapInuse()
		conns := benchConns(b, url, clients, nil)
		time.Sleep(200 * time.Millisecond) // let the snapshots be written
		after := heapInuse()
		for _, c := range conns {
			c.Close()
		}
		// Let both sides of the closed sockets wind down before the
		// next figure.
		eventually(10*time.Second, func() bool { return runtime.NumGoroutine() <= base })
		return float64(after-min(after, before)) / mib
	}

	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}))
	defer bare.Close()

	src := newFakeSource()
	for i := range 20 {
		src.set(view("site"+strconv.Itoa(i), nil, procmgr.StateRunning, 100+i))
	}
	e := newEnv(b, src, Options{MaxPerUser: 2 * clients, HealthEvery: time.Hour})
	var hubMiB, bareMiB float64
	for b.Loop() {
		hubMiB = measure(e.url("who=admin"))
		bareMiB = measure("ws" + bare.URL[len("http"):])
	}
	b.ReportMetric(hubMiB, "heap-MiB")
	b.ReportMetric(hubMiB*1024/clients, "KiB/socket")
	b.ReportMetric(bareMiB, "floor-heap-MiB")
	b.ReportMetric(hubMiB/bareMiB, "heap/floor")
}
