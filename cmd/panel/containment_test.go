package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/sitedb"
)

// attackPHP is hostile code a tenant puts in its own site: each test t
// tries one way out and answers "LEAK ..." when it got through, "held ..."
// when it was stopped. Arguments come in the query string.
const attackPHP = `<?php
header('Content-Type: text/plain');
$t = $_GET['t'] ?? ''; $a = $_GET['a'] ?? ''; $b = $_GET['b'] ?? '';
function leak($ok, $what) { echo ($ok ? "LEAK " : "held ") . $what; exit; }
function sh($cmd) { exec($cmd . ' 2>&1', $o, $rc); return [$rc, implode("\n", $o)]; }
switch ($t) {
case 'read':
	$d = @file_get_contents($a);
	if ($d !== false) leak(true, substr($d, 0, 100));
	[$rc, $o] = sh('cat ' . escapeshellarg($a));
	leak($rc === 0, substr($o, 0, 200));
case 'write':
	$ok = @file_put_contents($a, "written by a tenant") !== false;
	if (!$ok) { [$rc, $o] = sh('sh -c ' . escapeshellarg('echo x > ' . $a)); $ok = $rc === 0; }
	leak($ok, $a);
case 'symlink':
	@unlink(__DIR__ . '/link'); [$rc, $o] = sh('ln -s ' . escapeshellarg($a) . ' ' . escapeshellarg(__DIR__ . '/link'));
	[$rc, $o] = sh('cat ' . escapeshellarg(__DIR__ . '/link'));
	leak($rc === 0, substr($o, 0, 200));
case 'hardlink':
	@unlink(__DIR__ . '/hard'); [$rc, $o] = sh('ln ' . escapeshellarg($a) . ' ' . escapeshellarg(__DIR__ . '/hard'));
	if ($rc !== 0) leak(false, $o);
	[$rc, $o] = sh('cat ' . escapeshellarg(__DIR__ . '/hard'));
	leak($rc === 0, substr($o, 0, 200));
case 'procroot':
	[$rc, $o] = sh('ls /proc/' . intval($a) . '/root/');
	leak($rc === 0, substr($o, 0, 200));
case 'socket':
	$s = @stream_socket_client('unix://' . $a, $en, $es, 2);
	leak($s !== false, $es);
case 'list':
	[$rc, $o] = sh('ps -eo user:32,pid,args');
	leak(strpos($o, $a) !== false, "ps shows " . substr_count($o, "\n") . " lines");
case 'signal':
	[$rc, $o] = sh('kill -STOP ' . intval($a));
	leak($rc === 0, $o);
case 'mysql':
	mysqli_report(MYSQLI_REPORT_OFF);
	$m = @new mysqli('localhost', $a, $b, '', 0, $_GET['s']);
	if ($m->connect_errno) leak(false, $m->connect_error);
	$db = $_GET['db'] ?? '';
	$r = @$m->query('SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = \'' . $m->real_escape_string($db) . '\'');
	$n = $r ? $r->fetch_row()[0] : 0;
	$r2 = @$m->query('USE ' . chr(96) . $m->real_escape_string($db) . chr(96));
	leak($r2 !== false, "connected; USE " . ($r2 ? "worked" : $m->error) . "; sees $n tables");
case 'linger':
	[$rc, $o] = sh('setsid sh -c "sleep 600" < /dev/null > /dev/null 2>&1 & echo started');
	leak(false, $o);
case 'forkbomb':
	[$rc, $o] = sh('timeout 8 sh -c ' . escapeshellarg('n=0; i=0; while [ $i -lt 2000 ]; do if sleep 8 </dev/null >/dev/null 2>&1 & then n=$((n+1)); fi; i=$((i+1)); done; echo forked $n') . ' 2>/dev/null | tail -1');
	leak(false, $o);
case 'memhog':
	[$rc, $o] = sh('timeout 8 sh -c "head -c 3000000000 /dev/zero | tail > /dev/null"; echo "exit status $?"');
	leak(false, $o);
case 'cpuburn':
	[$rc, $o] = sh('timeout 6 sh -c "while :; do :; done" & timeout 6 sh -c "while :; do :; done" & timeout 6 sh -c "while :; do :; done" & wait; echo done');
	leak(false, $o);
}
echo "unknown test";
`

// putFile writes a file into the instance's public/, owned by it.
func putFile(t *testing.T, d *daemon, id procmgr.InstanceID, name, body string) {
	t.Helper()
	u, err := user.Lookup(id.UserName())
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	p := filepath.Join(d.layout.PublicDir(id), name)
	if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, uid, gid)
}

func TestContainmentFromInside(t *testing.T) {
	forEachBackend(t, testContainment)
}

// testContainment puts hostile PHP in instance A and asks for it through
// nginx, as a visitor (the tenant) would: every way out of A fails or is
// contained, and B keeps answering while A misbehaves.
func testContainment(t *testing.T, backend string) {
	root := mariadbRoot(t)
	d, addr := sitesDaemon(t, backend)
	a := procmgrtest.NewID("evil")
	b := procmgrtest.NewID("victim")
	domA, domB := string(a)+".example.test", string(b)+".example.test"
	d.must("create", string(a), "--cms", "wordpress", "--domain", domA, "--memory-max", "256M", "--memory-limit", "128M", "--tasks-max", "32", "--cpu-quota", "50%",
		// Under a fork bomb and a CPU burn at once A may well stop answering
		// its health probe: reported, not restarted, so that the test sees
		// what the hog alone did to A.
		"--on-unhealthy", "alert")
	d.must("create", string(b), "--cms", "wordpress", "--domain", domB)
	putFile(t, d, a, "attack.php", attackPHP)
	putFile(t, d, b, "secret.txt", "B's secret")

	attack := func(test string, q url.Values) string {
		t.Helper()
		if q == nil {
			q = url.Values{}
		}
		q.Set("t", test)
		code, body := visit(t, addr, domA, "/attack.php?"+q.Encode())
		if code != 200 {
			t.Fatalf("attack %s: status %d: %.300s", test, code, body)
		}
		return body
	}
	held := func(what, test string, q url.Values) {
		t.Helper()
		body := attack(test, q)
		if !strings.HasPrefix(body, "held ") {
			t.Errorf("%s: got through: %.300s", what, body)
		} else {
			t.Logf("%s: %.160s", what, body)
		}
	}
	arg := func(kv ...string) url.Values {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return q
	}
	bPub := d.layout.PublicDir(b)
	bStatus := d.must("status", string(b))
	bPID := field(t, pidRe, bStatus)
	dbB, userB := sitedb.Names(b)
	_, userA := sitedb.Names(a)

	// B's files: by path, through a link A plants, by /proc/<pid>/root, by a
	// hard link; writing them.
	held("read B's file by path", "read", arg("a", bPub+"/secret.txt"))
	held("read B's wp-config.php (its database password)", "read", arg("a", d.layout.InstanceDir(b)+"/wp-config.php"))
	held("read B's file through a symlink", "symlink", arg("a", bPub+"/secret.txt"))
	held("read B's file through a hard link", "hardlink", arg("a", bPub+"/secret.txt"))
	held("read B's files through /proc/<pid>/root", "procroot", arg("a", strconv.Itoa(bPID)))
	held("write into B's tree", "write", arg("a", bPub+"/defaced.html"))
	if _, err := os.Stat(bPub + "/defaced.html"); err == nil {
		t.Errorf("a file was written into B's tree")
	}
	// The host's and the panel's secrets.
	held("read /etc/shadow", "read", arg("a", "/etc/shadow"))
	held("read the panel's database", "read", arg("a", strings.TrimPrefix(d.db, "sqlite://")))
	held("read B's php-fpm config", "read", arg("a", d.layout.FPMConfigPath(b)))
	held("read the panel's nginx config", "read", arg("a", filepath.Join(d.layout.ConfigRoot, "nginx", "live", "sites", string(b)+".conf")))
	// B's pool and processes.
	held("connect to B's FastCGI socket", "socket", arg("a", d.layout.SocketPath(b)))
	held("signal B's master", "signal", arg("a", strconv.Itoa(bPID)))
	// systemd's ProtectProc=invisible, the supervisor's sandbox (its own
	// /proc with hidepid=invisible): A's ps shows A's processes alone.
	held("list B's processes", "list", arg("a", b.UserName()))
	held("list the panel's processes", "list", arg("a", "panel serve"))
	// B's database: with A's own credentials, and as B without its password.
	credsA := readWPPassword(t, d, a)
	held("use B's database with A's credentials", "mysql", arg("a", userA, "b", credsA, "s", sitedb.DefaultSocket, "db", dbB))
	held("log in as B's database user without its password", "mysql", arg("a", userB, "b", "", "s", sitedb.DefaultSocket, "db", dbB))
	if open := sitedb.OpenAdminLogins(t.Context(), sitedb.DefaultSocket); len(open) > 0 {
		// This machine's MariaDB lets root in with no password: the panel
		// must say so loudly (the tenant could read every database).
		if st := d.must("status"); !strings.Contains(st, "WARNING: every instance's PHP can log in to MariaDB as root") {
			t.Errorf("MariaDB root is open (%v) and panel status does not say so:\n%s", open, st)
		}
		t.Logf("MariaDB root is open on this machine (%s): panel status warns", strings.Join(open, "; "))
	} else {
		held("log in to MariaDB as root", "mysql", arg("a", "root", "b", "", "s", sitedb.DefaultSocket, "db", dbB))
	}
	var n int
	root.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", dbB).Scan(&n)
	if n == 0 {
		t.Errorf("B's database has no tables")
	}

	// Past its memory maximum, alone: the hog is killed, not A's pool.
	aPID := field(t, pidRe, d.must("status", string(a)))
	hog := attack("memhog", nil)
	if !strings.Contains(hog, "exit status 137") && !strings.Contains(hog, "exit status 1") {
		t.Errorf("the memory hog was not killed: %s", hog)
	}
	if pid := field(t, pidRe, d.must("status", string(a))); pid != aPID {
		t.Errorf("A's master changed (%d -> %d) after its memory hog; the daemon's log of A:\n%s", aPID, pid, linesWith(d.log.String(), string(a)))
	}

	// A misbehaves (fork bomb, memory hog, CPU burn) while B serves.
	var wg sync.WaitGroup
	results := make([]string, 3)
	for i, test := range []string{"forkbomb", "memhog", "cpuburn"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := fetch(addr, domA, "/attack.php?t="+test, 30*time.Second)
			results[i] = fmt.Sprintf("%s: %d %s %v", test, code, strings.TrimSpace(body), err)
		}()
	}
	var lat []time.Duration
	failed := 0
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		code, body := visit(t, addr, domB, "/")
		lat = append(lat, time.Since(start))
		if code != 200 || !strings.Contains(body, "<title>") {
			failed++
		}
	}
	wg.Wait()
	if failed > 0 {
		t.Errorf("B failed %d of %d requests while A misbehaved", failed, len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("B while A runs a fork bomb, a memory hog and a CPU burn: %d requests, p50 %s, p99 %s (make bench compares it with B's quiet figure)",
		len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond))
	t.Logf("A's misbehaviour: %q", results)
	// A is contained, not gone: once its children are done it answers.
	deadline = time.Now().Add(15 * time.Second)
	for {
		code, _, _ := fetch(addr, domA, "/", 5*time.Second)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("A answers %d 15 s after its misbehaviour", code)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pid := field(t, pidRe, d.must("status", string(b))); pid != bPID {
		t.Errorf("B's master changed (%d -> %d) while A misbehaved", bPID, pid)
	}

	// No process of A's outlives A's stop.
	attack("linger", nil)
	uA := lookupUID(t, a)
	d.must("stop", string(a))
	deadline = time.Now().Add(5 * time.Second)
	for {
		left := procmgr.UIDProcesses(uA)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of A left after its stop: %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := visit(t, addr, domB, "/"); code != 200 {
		t.Errorf("B answers %d after A's stop", code)
	}
}

// fetch is visit for a goroutine: errors are returned, not fatal.
func fetch(addr, host, path string, timeout time.Duration) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	res, err := (&http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

func lookupUID(t *testing.T, id procmgr.InstanceID) int {
	t.Helper()
	u, err := user.Lookup(id.UserName())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(u.Uid)
	return n
}

// readWPPassword reads an instance's database password from its
// wp-config.php, as the instance itself can.
func readWPPassword(t *testing.T, d *daemon, id procmgr.InstanceID) string {
	t.Helper()
	data, err := os.ReadFile(d.layout.InstanceDir(id) + "/wp-config.php")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "define('DB_PASSWORD', '") {
			return strings.TrimSuffix(strings.TrimPrefix(line, "define('DB_PASSWORD', '"), "');")
		}
	}
	t.Fatalf("no DB_PASSWORD in %s", fmt.Sprint(id))
	return ""
}

// linesWith is the lines of text that mention s.
func linesWith(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
