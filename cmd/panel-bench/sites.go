package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
)

// The front door's figures (issue: serving real sites), against a daemon
// whose nginx serves the instances on sitesAddr. wrk is the load (Debian's
// package, installed by make bench).

// misbehave is what a hostile tenant runs in A for the isolation figure.
const misbehave = `<?php
$t = $_GET['t'] ?? '';
if ($t === 'forkbomb') exec('timeout 8 sh -c ' . escapeshellarg('i=0; while [ $i -lt 2000 ]; do sleep 8 </dev/null >/dev/null 2>&1 & i=$((i+1)); done') . ' >/dev/null 2>&1');
if ($t === 'memhog') exec('timeout 8 sh -c "head -c 3000000000 /dev/zero | tail > /dev/null" 2>&1');
if ($t === 'cpuburn') { exec('sh -c ' . escapeshellarg('timeout 8 sh -c "while :; do :; done" & timeout 8 sh -c "while :; do :; done" & timeout 8 sh -c "while :; do :; done" & wait; times'), $o); echo implode("\n", $o), "\n"; }
echo "done $t";
`

func (b *bench) siteFigures(samples int) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk is missing: make bench installs it (scripts/deps.sh --bench)")
	}
	// 1. requests/s of a tiny PHP script, our config against a hand-written one.
	tiny := "tiny"
	if err := b.createSite(tiny, procmgr.SpecInput{PM: "static", MaxChildren: "4"}, cms.Site{}); err != nil {
		return err
	}
	b.putFile(tiny, "t.php", "<?php echo 'ok';\n")
	hand, stopHand, err := b.handWrittenNginx(tiny)
	if err != nil {
		return err
	}
	defer stopHand()
	var ours, theirs []float64
	for i := 0; i < 3; i++ {
		r, err := wrkRPS(b.sitesAddr, tiny+".example.test", "/t.php", 4*time.Second)
		if err != nil {
			return err
		}
		ours = append(ours, r)
		r, err = wrkRPS(hand, tiny+".example.test", "/t.php", 4*time.Second)
		if err != nil {
			return err
		}
		theirs = append(theirs, r)
	}
	o, h := median(ours), median(theirs)
	verdict := "OK"
	if o < 0.9*h {
		verdict, b.failed = "MISSED", true
	}
	b.note(fmt.Sprintf("%-58s %8.0f req/s  floor %8.0f req/s  ratio %4.2f  target >= 0.90  %s", "tiny PHP script through our nginx + pool config", o, h, o/h, verdict))
	b.note("  floor: a hand-written minimal server block (include fastcgi_params; fastcgi_pass) on the same pool, its own nginx; wrk -t2 -c16, 3 rounds of 4 s each, medians")

	// 2. failed requests while the pool reloads under steady load.
	failed, total, err := b.reloadUnderLoad(tiny, 6*time.Second)
	if err != nil {
		return err
	}
	verdict = "OK"
	if failed > 0 {
		verdict, b.failed = "MISSED", true
	}
	b.note(fmt.Sprintf("%-58s %d failed of %d  target 0  %s", "requests failed while the pool reloads (6 reloads in 6 s)", failed, total, verdict))

	// 3. B's p99 while A misbehaves, against B's quiet p99.
	if err := b.createSite("siteb", procmgr.SpecInput{}, cms.Site{}); err != nil {
		return err
	}
	if err := b.createSite("sitea", procmgr.SpecInput{MemoryMax: "256M", MemoryLimit: "128M", TasksMax: "32", CPUQuota: "50%", OnUnhealthy: "alert"}, cms.Site{}); err != nil {
		return err
	}
	b.putFile("sitea", "m.php", misbehave)
	// Quiet and loud rounds in turn, three of each: a p99 of a few ms
	// moves with anything else the machine does, so the medians are
	// compared.
	var quiets, louds []time.Duration
	var shares []float64
	aStatus := func() procmgr.Status {
		var v instances.View
		b.api("GET", "/api/v1/instances/sitea", nil, &v)
		return v.Status
	}
	for round := 0; round < 3; round++ {
		// A quiet first: the fork bomb's sleeping children of the last
		// round would also hold A's TasksMax, and the next burners could
		// not start.
		for deadline := time.Now().Add(20 * time.Second); aStatus().Tasks > 8 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
		}
		quiet, err := steadyP99(b.sitesAddr, "siteb.example.test", "/", 200, 6*time.Second)
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		var burnt string
		// The burners first, before the fork bomb fills TasksMax.
		for _, t := range []string{"cpuburn", "memhog", "forkbomb"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, body := get(b.sitesAddr, "sitea.example.test", "/m.php?t="+t, 30*time.Second)
				if t == "cpuburn" {
					burnt = body
				}
			}()
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		loud, err := steadyP99(b.sitesAddr, "siteb.example.test", "/", 200, 6*time.Second)
		wg.Wait()
		shares = append(shares, burnShare(burnt, 8*time.Second))
		if err != nil {
			return err
		}
		quiets, louds = append(quiets, quiet), append(louds, loud)
	}
	quiet, loud := pct(quiets, 0.5), pct(louds, 0.5)
	ratio := float64(loud) / float64(quiet)
	verdict = "OK"
	if ratio > 1.5 {
		verdict, b.failed = "MISSED", true
	}
	b.note(fmt.Sprintf("%-58s p99 %10s  quiet p99 %10s  ratio %4.2f  target <= 1.5x  %s", "B while A runs a fork bomb, a memory hog and a CPU burn", ms(loud), ms(quiet), ratio, verdict))
	// For scale: the same three burners outside any instance (no quota,
	// nice 19), one round.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exec.Command("nice", "-n", "19", "timeout", "7", "sh", "-c", "while :; do :; done").Run()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	unbounded, err := steadyP99(b.sitesAddr, "siteb.example.test", "/", 200, 6*time.Second)
	wg.Wait()
	if err != nil {
		return err
	}
	b.note(fmt.Sprintf("  for scale, the same three CPU burners outside any instance (no quota, nice 19): B's p99 %s, ratio %.2f", ms(unbounded), float64(unbounded)/float64(quiet)))
	b.note(fmt.Sprintf("  A: MemoryMax 256M, TasksMax 32, CPUQuota 50%%; B: defaults; steady load on B's index page: 200 requests/s for 6 s, each at its time (open loop); medians of 3 rounds each (quiet %v, loud %v)", roundMS(quiets), roundMS(louds)))
	b.note(fmt.Sprintf("  A's burners got %.2f %.2f %.2f of a CPU in the loud rounds (their CPU time over their 8 s, from sh's times; A's quota 0.50)", shares[0], shares[1], shares[2]))

	// 4. create --cms wordpress until its front page answers; its floor,
	// copying the same tree alone (the disk's state in this run).
	var ds, copies []time.Duration
	for i := 0; i < samples; i++ {
		c, err := b.copyFloor(fmt.Sprintf("floor%02d", i))
		if err != nil {
			return err
		}
		copies = append(copies, c)
		id := fmt.Sprintf("wp%02d", i)
		start := time.Now()
		if err := b.createSite(id, procmgr.SpecInput{CMS: "wordpress"}, cms.Site{Title: "Bench " + id}); err != nil {
			return err
		}
		code, body := get(b.sitesAddr, id+".example.test", "/", 10*time.Second)
		if code != 200 || !strings.Contains(body, "<title>Bench "+id+"</title>") {
			return fmt.Errorf("front page of %s: %d %.200s", id, code, body)
		}
		ds = append(ds, time.Since(start))
		if err := b.api("DELETE", "/api/v1/instances/"+id+"?purge=true", nil, nil); err != nil {
			return err
		}
	}
	b.report("create --cms wordpress until its front page answers", ds, 3*time.Second)
	b.note(fmt.Sprintf("  floor: cp -R -L of Debian's WordPress (2,568 files, 60 MB) alone, same disk, same run: p50 %s; ratio %.2f", ms(pct(copies, 0.5)), float64(pct(ds, 0.5))/float64(pct(copies, 0.5))))

	// 5. kill -STOP of a master until it serves again (default policy).
	ds = ds[:0]
	for i := 0; i < min(samples, 3); i++ {
		var v instances.View
		if err := b.api("GET", "/api/v1/instances/siteb", nil, &v); err != nil {
			return err
		}
		pid := v.Status.MainPID
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
		var last string
		for {
			var now instances.View
			err := b.api("GET", "/api/v1/instances/siteb", nil, &now)
			if err == nil && now.Status.MainPID != pid && now.Status.MainPID > 1 {
				code, body := get(b.sitesAddr, "siteb.example.test", "/", 2*time.Second)
				if code == 200 {
					break
				}
				last = fmt.Sprintf("pid %d, GET / %d %.100s", now.Status.MainPID, code, body)
			} else {
				last = fmt.Sprintf("pid %d (%s), %v", now.Status.MainPID, now.Status.State, err)
			}
			if time.Since(start) > 30*time.Second {
				syscall.Kill(pid, syscall.SIGCONT)
				return fmt.Errorf("siteb not serving with a new master 30 s after SIGSTOP: %s", last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		ds = append(ds, time.Since(start))
	}
	b.report("kill -STOP of a master until a new one serves (restart)", ds, 15*time.Second)
	return nil
}

// createSite creates an instance with the domain <id>.example.test.
func (b *bench) createSite(id string, in procmgr.SpecInput, site cms.Site) error {
	in.Domains = []string{id + ".example.test"}
	var v instances.View
	return b.api("POST", "/api/v1/instances", instances.CreateRequest{ID: id, Spec: in, Site: site}, &v)
}

// putFile writes a file into an instance's public/, owned by it.
func (b *bench) putFile(id, name, body string) error {
	pub := b.layout.PublicDir(procmgr.InstanceID(id))
	st, err := os.Stat(pub)
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	p := filepath.Join(pub, name)
	if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
		return err
	}
	return os.Chown(p, int(sys.Uid), int(sys.Gid))
}

// handWrittenNginx runs a second nginx with the minimal config a person
// would write for the same pool: the floor of the requests/s figure.
func (b *bench) handWrittenNginx(id string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(filepath.Dir(b.layout.InstancesRoot), "hand-nginx")
	os.MkdirAll(dir, 0o700)
	conf := fmt.Sprintf(`user www-data;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen %[2]s;
        root %[3]s;
        location ~ \.php$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:%[4]s;
        }
    }
}
`, dir, addr, b.layout.PublicDir(procmgr.InstanceID(id)), b.layout.SocketPath(procmgr.InstanceID(id)))
	if err := os.WriteFile(dir+"/nginx.conf", []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command("/usr/sbin/nginx", "-c", dir+"/nginx.conf", "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("the hand-written nginx did not listen on %s", addr)
}

// reloadUnderLoad runs wrk against the site while the pool is reloaded
// every second, and counts wrk's failed requests.
func (b *bench) reloadUnderLoad(id string, d time.Duration) (int, int, error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < int(d/time.Second); i++ {
			time.Sleep(900 * time.Millisecond)
			b.api("POST", "/api/v1/instances/"+id+"/reload", nil, nil)
		}
	}()
	out, err := exec.Command("wrk", "-t2", "-c16", fmt.Sprintf("-d%ds", int(d/time.Second)+1), "-H", "Host: "+id+".example.test", "http://"+b.sitesAddr+"/t.php").CombinedOutput()
	<-done
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	total := wrkInt(out, `(\d+) requests in`)
	failed := wrkInt(out, `Non-2xx or 3xx responses: (\d+)`)
	for _, n := range regexp.MustCompile(`(connect|read|write|timeout) (\d+)`).FindAllSubmatch(out, -1) {
		k, _ := strconv.Atoi(string(n[2]))
		failed += k
	}
	return failed, total, nil
}

func wrkInt(out []byte, re string) int {
	m := regexp.MustCompile(re).FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// wrkRPS is wrk's requests/s for path on host.
func wrkRPS(addr, host, path string, d time.Duration) (float64, error) {
	out, err := exec.Command("wrk", "-t2", "-c16", fmt.Sprintf("-d%ds", int(d/time.Second)), "-H", "Host: "+host, "http://"+addr+path).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	if n := wrkInt(out, `Non-2xx or 3xx responses: (\d+)`); n > 0 {
		return 0, fmt.Errorf("wrk on %s%s: %d non-2xx answers:\n%s", host, path, n, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// steadyP99 sends rate requests a second for d, each at its own time
// whatever the others do (an open loop: a saturating closed loop such as
// wrk's measures queueing, not the latency visitors see), and returns the
// 99th percentile of their latencies. A failed request is an error.
func steadyP99(addr, host, path string, rate int, d time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
			req.Host = host
			t0 := time.Now()
			res, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					err = fmt.Errorf("status %d", res.StatusCode)
				}
			}
			lat[i], errs[i] = time.Since(t0), err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("steady load on %s: %w", host, err)
		}
	}
	return pct(lat, 0.99), nil
}

func get(addr, host, path string, timeout time.Duration) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	res, err := (&http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil || sb.Len() > 1<<20 {
			break
		}
	}
	return res.StatusCode, sb.String()
}

// copyFloor copies WordPress the way an install does, without the panel,
// into a new directory of the instances root (where an instance's files
// go: name is not an instance's).
func (b *bench) copyFloor(name string) (time.Duration, error) {
	dst := filepath.Join(b.layout.InstancesRoot, name)
	os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dst)
	args := []string{"-R", "-L", "--no-preserve=all", "--"}
	for _, e := range []string{"index.php", "wp-admin", "wp-includes", "wp-content", "wp-load.php", "wp-settings.php"} {
		args = append(args, "/usr/share/wordpress/"+e)
	}
	start := time.Now()
	if out, err := exec.Command("cp", append(args, dst+"/")...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v: %s", err, out)
	}
	return time.Since(start), nil
}

// burnShare reads the children's CPU time from sh's times (the second of
// its two lines: "0m3.990000s 0m0.010000s", user and system) in out, and
// returns it over d, in CPUs; -1 when out has none.
func burnShare(out string, d time.Duration) float64 {
	var found []time.Duration
	for _, line := range strings.Split(out, "\n") {
		var um, sm int
		var us, ss float64
		if n, _ := fmt.Sscanf(strings.TrimSpace(line), "%dm%fs %dm%fs", &um, &us, &sm, &ss); n == 4 {
			found = append(found, time.Duration(um+sm)*time.Minute+time.Duration((us+ss)*float64(time.Second)))
		}
	}
	if len(found) < 2 {
		return -1
	}
	return float64(found[1]) / float64(d)
}

func roundMS(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
