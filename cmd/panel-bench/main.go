// Command panel-bench measures the figures of the instance engine against
// a real `panel serve` on a real systemd and prints them. It must run as
// root inside a systemd (make bench boots a private one).
//
// It creates its own layout, unit prefix, socket and database, runs 200
// background instances, and removes everything it made when it ends.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/systemd"
	"github.com/ikabud/panel/internal/store"
)

type bench struct {
	backend string
	panel   string
	logPath string
	layout  procmgr.Layout
	socket  string
	dsn     string
	daemon  *exec.Cmd
	exited  chan struct{}
	http    *http.Client
	results []string
	// httpAddr is the daemon's web panel; killFloor the p50 of kill -9 to
	// the raw D-Bus event, the floor of the websocket figure.
	httpAddr      string
	killFloor     time.Duration
	killFloorName string
	failed        bool
	// restore: instances to bring back after a simulated reboot; loggers:
	// instances logging for the memory figure.
	restore, loggers int
	// sitesAddr: where nginx serves the sites (--sites); "" runs none.
	sitesAddr string
}

func main() {
	background := flag.Int("background", 200, "instances running in the background")
	samples := flag.Int("samples", 30, "samples per latency figure")
	known := flag.Int("known", 1000, "instances known to the daemon for list and memory")
	panelBin := flag.String("panel", "", "panel binary (default: build ./cmd/panel)")
	backend := flag.String("backend", "systemd", "systemd or supervise")
	restore := flag.Int("restore", -1, "instances recorded as running and gone from the host that a panel start must bring back (default 1000 for the supervisor, 0 for systemd)")
	loggers := flag.Int("loggers", 100, "instances logging at full rate for the daemon-memory figure (supervisor only)")
	sites := flag.Bool("sites", false, "measure only the front door's figures (nginx, WordPress, isolation, health restarts)")
	flag.Parse()
	if *restore < 0 {
		*restore = 0
		if *backend == "supervise" {
			*restore = 1000
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "panel-bench must run as root: use `make bench`")
		os.Exit(1)
	}
	if comm, _ := os.ReadFile("/proc/1/comm"); *backend == "systemd" && strings.TrimSpace(string(comm)) != "systemd" {
		fmt.Fprintln(os.Stderr, "panel-bench --backend systemd must run under systemd: use `make bench`")
		os.Exit(1)
	}
	b := &bench{backend: *backend, restore: *restore, loggers: *loggers}
	if *sites {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		b.sitesAddr = ln.Addr().String()
		ln.Close()
	}
	loadStart := loadavg()
	if err := b.setup(*panelBin); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		os.Exit(1)
	}
	var err error
	if *sites {
		err = b.siteFigures(min(*samples, 5))
	} else {
		err = b.run(*background, *samples, *known)
	}
	b.cleanup()
	fmt.Println()
	fmt.Printf("== Ikabud Panel benchmark (%s backend) ==\n", b.backend)
	fmt.Println("daemon log:", b.logPath)
	fmt.Printf("load average (1, 5, 15 min): %s at start, %s at end; figures are read as ratios to their floors, measured in the same run\n", loadStart, loadavg())
	for _, r := range b.results {
		fmt.Println(r)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if b.failed {
		// The figures are the output; a missed target is reported, not an
		// error, so that make bench goes on to the next backend.
		fmt.Println("some figures missed their targets (marked MISSED)")
	}
}

func (b *bench) setup(panelBin string) error {
	tag := strconv.FormatInt(time.Now().UnixNano()%1e8, 36)
	base := "/var/lib/ikabud-bench/" + tag
	b.layout = procmgr.Layout{
		InstancesRoot: base + "/instances", ConfigRoot: base + "/etc", RuntimeRoot: "/run/ikb-" + tag,
		UnitDir: "/etc/systemd/system", WebUser: "www-data", UnitPrefix: "ikb-" + tag,
	}
	b.socket = base + "/panel.sock"
	b.logPath = base + ".daemon.log"
	os.MkdirAll(filepath.Dir(base), 0o755)
	b.dsn = "sqlite://" + base + "/panel.db"
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	b.panel = panelBin
	if b.panel == "" {
		b.panel = filepath.Join(base, "panel")
		out, err := exec.Command("go", "build", "-o", b.panel, "./cmd/panel").CombinedOutput()
		if err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	b.http = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", b.socket)
		},
	}}
	return b.startDaemon()
}

func (b *bench) startDaemon() error {
	if b.httpAddr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		b.httpAddr = ln.Addr().String()
		ln.Close()
	}
	front := []string{"--http-listen", "none"}
	if b.sitesAddr != "" {
		front = []string{"--http-listen", b.sitesAddr, "--nginx", "supervise"}
	}
	b.daemon = exec.Command(b.panel, "serve", "--db", b.dsn, "--listen", b.httpAddr, "--socket", b.socket,
		"--instances-root", b.layout.InstancesRoot, "--config-root", b.layout.ConfigRoot,
		"--runtime-root", b.layout.RuntimeRoot, "--web-user", b.layout.WebUser, "--unit-prefix", b.layout.UnitPrefix,
		"--log-level", "info", "--backend", b.backend)
	b.daemon.Args = append(b.daemon.Args, front...)
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	b.daemon.Stderr = logf
	if err := b.daemon.Start(); err != nil {
		return err
	}
	b.exited = make(chan struct{})
	go func() { b.daemon.Wait(); close(b.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := b.api("GET", "/api/v1/instances", nil, nil); err == nil {
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("panel serve exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("panel serve did not answer")
}

func (b *bench) stopDaemon() {
	b.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.daemon.Process.Kill()
		<-b.exited
	}
}

func (b *bench) api(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, "http://panel"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	res, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		msg, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, msg)
	}
	if out != nil {
		return json.NewDecoder(res.Body).Decode(out)
	}
	io.Copy(io.Discard, res.Body)
	return nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func (b *bench) report(name string, ds []time.Duration, target time.Duration) {
	p50 := pct(ds, 0.5)
	verdict := "OK"
	if p50 > target {
		verdict = "MISSED"
		b.failed = true
	}
	line := fmt.Sprintf("%-58s p50 %10s  p90 %10s  max %10s  (n=%d)  target p50 <= %s  %s",
		name, ms(p50), ms(pct(ds, 0.9)), ms(pct(ds, 1)), len(ds), ms(target), verdict)
	fmt.Println(line)
	b.results = append(b.results, line)
}

func (b *bench) note(line string) {
	fmt.Println(line)
	b.results = append(b.results, line)
}

func (b *bench) create(id string) (instances.View, error) {
	var v instances.View
	err := b.api("POST", "/api/v1/instances", instances.CreateRequest{ID: id}, &v)
	return v, err
}

func (b *bench) run(background, samples, known int) error {
	// 200 instances running in the background, created four at a time.
	fmt.Printf("creating %d background instances...\n", background)
	var bg []string
	for i := 0; i < background; i++ {
		bg = append(bg, fmt.Sprintf("bg%04d", i))
	}
	t0 := time.Now()
	if err := parallel(bg, 4, func(id string) error { _, err := b.create(id); return err }); err != nil {
		return err
	}
	b.note(fmt.Sprintf("%-58s %d in %s (%s each, 4 at a time)", "setup: create background instances", background, time.Since(t0).Round(time.Millisecond), ms(time.Since(t0)/time.Duration(background))))

	// create until ping, one at a time, with the background running.
	var ds []time.Duration
	for i := 0; i < samples; i++ {
		id := fmt.Sprintf("cr%04d", i)
		start := time.Now()
		v, err := b.create(id)
		if err != nil {
			return err
		}
		ds = append(ds, time.Since(start))
		if v.Status.State != procmgr.StateRunning {
			return fmt.Errorf("created %s is %s", id, v.Status.State)
		}
		if err := procmgr.Ping(context.Background(), b.layout.SocketPath(procmgr.InstanceID(id))); err != nil {
			return fmt.Errorf("created %s does not answer ping: %w", id, err)
		}
	}
	// The issues' targets: 150 ms under systemd, 60 ms under the supervisor.
	target := 150 * time.Millisecond
	if b.backend == "supervise" {
		target = 60 * time.Millisecond
	}
	createDs := append([]time.Duration(nil), ds...)
	createTarget := target
	for i := 0; i < samples; i++ {
		if err := b.api("DELETE", fmt.Sprintf("/api/v1/instances/cr%04d?purge=true", i), nil, nil); err != nil {
			return err
		}
	}

	// status of one instance through the daemon (JSON API over the socket).
	ds = ds[:0]
	for i := 0; i < 1000; i++ {
		start := time.Now()
		var v instances.View
		if err := b.api("GET", "/api/v1/instances/"+bg[i%len(bg)], nil, &v); err != nil {
			return err
		}
		ds = append(ds, time.Since(start))
	}
	floor := b.apiFloor(1000)
	b.reportRatio("status of one instance through the daemon (API)", ds, floor, "GET /healthz over the same socket", 3, 2*time.Millisecond)
	ds = ds[:0]
	for i := 0; i < 20; i++ {
		start := time.Now()
		cmd := exec.Command(b.panel, "status", bg[i])
		cmd.Env = append(os.Environ(), "IKABUD_SOCKET="+b.socket)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("panel status: %v %s", err, out)
		}
		ds = append(ds, time.Since(start))
	}
	b.note(fmt.Sprintf("%-58s p50 %10s  (n=%d; includes starting the CLI process)", "`panel status` command, whole process", ms(pct(ds, 0.5)), len(ds)))

	// kill -9 of a master until a subscriber (a second backend with its
	// own D-Bus subscription) gets the event. One kill per instance, so no
	// instance nears its start limit. The supervisor's figure comes from
	// its package's benchmarks (a second supervisor would not see its
	// children's exits).
	if b.backend == "systemd" {
		if err := b.killEvents(bg[:min(samples, len(bg))]); err != nil {
			return err
		}
	} else {
		wf, err := waitidFloor(samples)
		if err != nil {
			return err
		}
		b.killFloor, b.killFloorName = pct(wf, 0.5), "a child killed with SIGKILL until its parent's wait returns"
	}

	// start 200 stopped instances with one request.
	// The web panel: kill -9 until an open page's websocket hears of it,
	// and the daemon's memory with 1,000 pages open.
	// Other instances than killEvents killed, so none nears its start limit.
	if err := b.webFigures(bg[min(samples, len(bg)):], samples); err != nil {
		return fmt.Errorf("web figures: %w", err)
	}

	fmt.Println("stopping background instances...")
	if err := parallel(bg, 8, func(id string) error { return b.api("POST", "/api/v1/instances/"+id+"/stop", nil, nil) }); err != nil {
		return err
	}
	// The floors of create and start-all, with the panel stopped (no
	// reconciler to interfere): the same units started by systemctl, or
	// the same php-fpm started directly.
	const floorID = "fl0000"
	if _, err := b.create(floorID); err != nil {
		return err
	}
	if err := b.api("POST", "/api/v1/instances/"+floorID+"/stop", nil, nil); err != nil {
		return err
	}
	fmt.Println("measuring floors with the panel stopped...")
	b.stopDaemon()
	createFloor, err := b.createFloor(floorID, samples)
	if err != nil {
		return fmt.Errorf("create floor: %w", err)
	}
	startFloorTook, stopFloor, err := b.startFloor(bg)
	if err != nil {
		return fmt.Errorf("start-all floor: %w", err)
	}
	if err := stopFloor(); err != nil {
		return err
	}
	if b.backend == "supervise" && len(bg) >= 2*samples {
		if err := b.peerFigures(bg, samples); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
	}
	if err := b.startDaemon(); err != nil {
		return err
	}
	floorName := "useradd + gpasswd of an account, then `systemctl start` of an instance's own unit, until ping"
	if b.backend == "supervise" {
		floorName = "useradd + gpasswd of an account, then php-fpm started directly with an instance's config, as its user, until ping"
	}
	b.reportRatio(fmt.Sprintf("create until ping answers (%d running)", background), createDs, createFloor, floorName, 1.5, createTarget)
	if err := b.api("DELETE", "/api/v1/instances/"+floorID+"?purge=true", nil, nil); err != nil {
		return err
	}
	start := time.Now()
	var res instances.StartAllResult
	if err := b.api("POST", "/api/v1/instances/start-all", nil, &res); err != nil {
		return err
	}
	elapsed := time.Since(start)
	for _, f := range res.Failed {
		// Reported, not fatal: the rest of the figures still stand.
		fmt.Printf("start-all: %s did not start: %s\n", f.ID, f.Error)
	}
	if len(res.Started)+len(res.Failed) != len(bg) {
		return fmt.Errorf("start-all reported %d started and %d failed of %d", len(res.Started), len(res.Failed), len(bg))
	}
	for _, id := range res.Started {
		if err := procmgr.WaitReady(context.Background(), b.layout.SocketPath(procmgr.InstanceID(id))); err != nil {
			return fmt.Errorf("%s after start-all: %w", id, err)
		}
	}
	all := time.Since(start)
	verdict := "OK"
	if elapsed > 3500*time.Millisecond {
		verdict, b.failed = "MISSED", true
	}
	if len(res.Failed) > 0 {
		verdict, b.failed = fmt.Sprintf("%s, %d FAILED", verdict, len(res.Failed)), true
	}
	b.note(fmt.Sprintf("%-58s %10s (all answering ping after %s)  target <= 3500 ms  %s", fmt.Sprintf("start %d stopped instances (start --all)", len(bg)), ms(elapsed), ms(all), verdict))
	startFloorName := fmt.Sprintf("`systemctl start` of the same %d units in one command, until all answer ping", len(bg))
	if b.backend == "supervise" {
		startFloorName = fmt.Sprintf("the same %d php-fpm started directly, 16 at a time, until all answer ping", len(bg))
	}
	ratio := float64(all) / float64(startFloorTook)
	rv := "OK"
	if ratio > 1.5 {
		rv, b.failed = "MISSED", true
	}
	b.note(fmt.Sprintf("  floor: %s: %s; ratio (all answering) %.2f  target <= 1.5x  %s", startFloorName, ms(startFloorTook), ratio, rv))
	if data, err := os.ReadFile(b.logPath); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "action=start-many") {
				b.note("  daemon: " + line[strings.Index(line, "msg="):])
			}
		}
	}

	// kill -9 of a master while one of its workers is busy, until the
	// instance serves again: the same figure as the peer's.
	if len(bg) >= 3*samples {
		ds, orphans, err := b.killBusy(bg[2*samples:3*samples], func(id string) (int, error) {
			var v instances.View
			if err := b.api("GET", "/api/v1/instances/"+id, nil, &v); err != nil {
				return 0, err
			}
			if v.Status.State != procmgr.StateRunning {
				return 0, fmt.Errorf("%s is %s", id, v.Status.State)
			}
			return v.Status.MainPID, nil
		})
		if err != nil {
			return fmt.Errorf("kill with a busy worker: %w", err)
		}
		b.note(fmt.Sprintf("%-58s p50 %10s  p90 %10s  (n=%d); workers left running after the restart: %d",
			"kill -9 with a busy worker, until ping", ms(pct(ds, 0.5)), ms(pct(ds, 0.9)), len(ds), orphans))
	}
	if b.restore > 0 {
		if err := b.restoreFigure(bg, b.restore); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if b.backend == "supervise" && b.loggers > 0 {
		if err := b.loggingMemory(bg[:min(b.loggers, len(bg))]); err != nil {
			return fmt.Errorf("logging memory: %w", err)
		}
	}

	// list and memory with `known` instances: the running ones plus rows
	// recorded as stopped, loaded by a restarted daemon.
	var have []instances.View
	if err := b.api("GET", "/api/v1/instances", nil, &have); err != nil {
		return err
	}
	if known > len(have) {
		b.stopDaemon()
		if err := b.addStoppedRows(known - len(have)); err != nil {
			return err
		}
		if err := b.startDaemon(); err != nil {
			return err
		}
	}
	ds = ds[:0]
	var n int
	for i := 0; i < 50; i++ {
		start := time.Now()
		var vs []instances.View
		if err := b.api("GET", "/api/v1/instances", nil, &vs); err != nil {
			return err
		}
		ds = append(ds, time.Since(start))
		n = len(vs)
	}
	// The ratio to an empty call says what a thousand rows cost; the
	// target is the absolute one.
	b.report(fmt.Sprintf("list --json of %d instances (API, decoded)", n), ds, 20*time.Millisecond)
	lf := pct(b.apiFloor(50), 0.5)
	b.note(fmt.Sprintf("  floor: GET /healthz over the same socket: p50 %s; ratio %.1f (no ratio target: the list is %d rows)", ms(lf), float64(pct(ds, 0.5))/float64(lf), n))
	rss := vmRSS(b.daemon.Process.Pid)
	verdict = "OK"
	if rss > 100<<20 {
		verdict, b.failed = "MISSED", true
	}
	b.note(fmt.Sprintf("%-58s %10.1f MiB RSS  target <= 100 MiB  %s", fmt.Sprintf("daemon memory, %d instances known (%d running)", n, b.running()), float64(rss)/(1<<20), verdict))
	return nil
}

func (b *bench) killEvents(ids []string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := systemd.New(ctx, systemd.Options{Layout: b.layout})
	if err != nil {
		return err
	}
	defer sub.Close()
	events, err := sub.Subscribe(ctx)
	if err != nil {
		return err
	}
	var ds []time.Duration
	for _, id := range ids {
		st, err := sub.Status(ctx, procmgr.InstanceID(id))
		if err != nil {
			return err
		}
		// Drain what is queued, so the next event is the kill's.
		for len(events) > 0 {
			<-events
		}
		start := time.Now()
		if err := syscall.Kill(st.MainPID, syscall.SIGKILL); err != nil {
			return err
		}
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case ev := <-events:
				if string(ev.Status.ID) == id && (ev.Status.State != procmgr.StateRunning || ev.Status.MainPID != st.MainPID) {
					ds = append(ds, time.Since(start))
					break wait
				}
			case <-timeout:
				return fmt.Errorf("no event for the kill of %s", id)
			}
		}
		if err := procmgr.WaitReady(ctx, b.layout.SocketPath(procmgr.InstanceID(id))); err != nil {
			return err
		}
	}
	b.report("kill -9 of a master until a subscriber gets the event", ds, 10*time.Millisecond)
	b.killFloor, b.killFloorName = pct(ds, 0.5), "the raw D-Bus signal, heard by a subscriber of its own"
	return nil
}

func (b *bench) addStoppedRows(n int) error {
	ctx := context.Background()
	db, err := store.Open(ctx, b.dsn, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("st%04d", i)
		spec, err := procmgr.ParseSpec(id, procmgr.SpecInput{}, nil)
		if err != nil {
			return err
		}
		data, _ := procmgr.MarshalSpec(spec)
		if err := db.CreateInstance(ctx, &store.Instance{ID: id, CMS: "php", PHPVersion: "8.2", Spec: string(data),
			DesiredState: instances.DesiredStopped, Phase: instances.PhaseReady, Generation: 1}); err != nil {
			return err
		}
	}
	return nil
}

func vmRSS(pid int) uint64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			n, _ := strconv.ParseUint(f[0], 10, 64)
			return n << 10
		}
	}
	return 0
}

func parallel(ids []string, workers int, f func(string) error) error {
	ch := make(chan string)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if err := f(id); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
	return first
}

// cleanup removes every instance the daemon knows and the bench's files.
func (b *bench) cleanup() {
	fmt.Println("cleaning up...")
	var vs []instances.View
	if err := b.api("GET", "/api/v1/instances", nil, &vs); err == nil {
		var ids []string
		for _, v := range vs {
			ids = append(ids, v.ID)
		}
		parallel(ids, 8, func(id string) error {
			return b.api("DELETE", "/api/v1/instances/"+id+"?purge=true", nil, nil)
		})
	}
	b.stopDaemon()
	if data, err := os.ReadFile(filepath.Join(b.layout.RuntimeRoot, "nginx.pid")); err == nil {
		// The supervised nginx outlives the panel by design; the bench's
		// must not.
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	os.Remove(filepath.Join(b.layout.UnitDir, b.layout.UnitTemplateName()))
	// The supervisor's state, logs and (empty) parent cgroups.
	p := b.layout.UnitPrefix
	os.RemoveAll("/run/" + p + "-supervise")
	os.RemoveAll("/var/log/" + p)
	os.RemoveAll("/var/log/" + p + "-sites")
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + p)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+p) {
		os.Remove(d)
	}
	os.RemoveAll(filepath.Dir(b.layout.InstancesRoot))
}
