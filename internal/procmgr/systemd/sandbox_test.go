package systemd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
)

// hostilePHP is run by instance A's pool, as A's user inside A's unit. Each
// attempt goes past PHP's own checks (open_basedir) by running a command, so
// what stops it is the unit's sandbox. It prints one JSON object: for each
// attempt, what happened. Its arguments come in the query string.
const hostilePHP = `<?php
header('Content-Type: application/json');
$q = [];
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
function sh($cmd) {
	$out = []; $rc = -1;
	exec($cmd . ' 2>&1', $out, $rc);
	return ['rc' => $rc, 'out' => implode("\n", $out)];
}
$r = [];
// Control: a command runs, and A may write its own root.
$r['own_write'] = sh('touch ' . escapeshellarg($q['own'] . '/tmp/ok') . ' && echo written');
$r['etc_write'] = sh('echo x > /etc/ikabud-sandbox-test');
$r['other_write'] = sh('touch ' . escapeshellarg($q['other'] . '/public/planted'));
$r['other_proc'] = sh('test -e /proc/' . (int)$q['otherpid'] . '/status && echo visible || echo hidden');
$r['meminfo'] = sh('cat /proc/meminfo');
$r['setuid'] = sh('cp /bin/true ' . escapeshellarg($q['own'] . '/tmp/su') . ' && chmod 4755 ' . escapeshellarg($q['own'] . '/tmp/su'));
$raw = @socket_create(AF_INET, SOCK_RAW, 1);
$r['raw_socket'] = ['ok' => $raw !== false, 'err' => $raw === false ? socket_strerror(socket_last_error()) : ''];
$errno = 0; $errstr = '';
$srv = @stream_socket_server('tcp://127.0.0.1:' . (int)$q['port'], $errno, $errstr);
$r['bind_panel_port'] = ['ok' => $srv !== false, 'err' => $errstr];
$srv = @stream_socket_server('tcp://127.0.0.1:' . (int)$q['lowport'], $errno, $errstr);
$r['bind_low_port'] = ['ok' => $srv !== false, 'err' => $errstr];
$cli = @stream_socket_client('tcp://127.0.0.1:' . (int)$q['connect'], $errno, $errstr, 5);
$r['connect_out'] = ['ok' => $cli !== false, 'err' => $errstr];
echo json_encode($r);
`

type shResult struct {
	RC  int    `json:"rc"`
	Out string `json:"out"`
}

type sockResult struct {
	OK  bool   `json:"ok"`
	Err string `json:"err"`
}

// Hostile commands run as an instance inside its unit all fail, while what
// a PHP site needs (writing its own root, connecting out) still works:
// the sandbox, not PHP's open_basedir, is what holds.
func TestSandboxHoldsHostileCommands(t *testing.T) {
	procmgrtest.RequirePHPFPM(t)
	l := procmgrtest.NewLayout(t)
	b := newBackend(t, l)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a, other := procmgrtest.NewID("sba"), procmgrtest.NewID("sbb")
	for _, id := range []procmgr.InstanceID{a, other} {
		if _, err := b.Provision(ctx, procmgrtest.MustSpec(t, id, procmgr.SpecInput{})); err != nil {
			t.Fatal(err)
		}
		defer b.Deprovision(context.Background(), id, true)
	}
	ost, err := b.Status(ctx, other)
	if err != nil || ost.MainPID <= 1 {
		t.Fatalf("other instance's status: %+v %v", ost, err)
	}
	// The panel's port, held by the test as the panel would hold it while
	// running: the instance must not be able to bind it even when free, so
	// a free port stands in for it. And a listener A may connect to.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	lowPort := 0
	for p := 700; p < 1000 && lowPort == 0; p++ {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			lowPort = p
		}
	}
	out, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	go func() {
		for {
			c, err := out.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	script := filepath.Join(l.PublicDir(a), "hostile.php")
	if err := os.WriteFile(script, []byte(hostilePHP), 0o644); err != nil {
		t.Fatal(err)
	}
	query := fmt.Sprintf("own=%s&other=%s&otherpid=%d&port=%d&lowport=%d&connect=%d", l.InstanceDir(a), l.InstanceDir(other),
		ost.MainPID, port, lowPort, out.Addr().(*net.TCPAddr).Port)
	resp, err := fcgi.Do(ctx, l.SocketPath(a), fcgi.Request{Params: map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
		"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/hostile.php", "REQUEST_URI": "/hostile.php?" + query, "QUERY_STRING": query,
	}})
	if err != nil {
		t.Fatalf("running the script in %s: %v", a, err)
	}
	var r struct {
		OwnWrite, EtcWrite, OtherWrite, OtherProc, Meminfo, Setuid shResult
		RawSocket, BindPanelPort, BindLowPort, ConnectOut          sockResult
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(resp.Body, &raw); err != nil {
		t.Fatalf("script output %q: %v", resp.Body, err)
	}
	for name, dst := range map[string]any{"own_write": &r.OwnWrite, "etc_write": &r.EtcWrite, "other_write": &r.OtherWrite,
		"other_proc": &r.OtherProc, "meminfo": &r.Meminfo, "setuid": &r.Setuid, "raw_socket": &r.RawSocket,
		"bind_panel_port": &r.BindPanelPort, "bind_low_port": &r.BindLowPort, "connect_out": &r.ConnectOut} {
		if err := json.Unmarshal(raw[name], dst); err != nil {
			t.Fatalf("%s: %v in %s", name, err, resp.Body)
		}
	}
	t.Logf("inside %s: %s", l.UnitName(a), resp.Body)

	// The controls: commands run, the site's own root and the network out
	// work. Without them every "refused" below could be a broken script.
	if r.OwnWrite.RC != 0 || !strings.Contains(r.OwnWrite.Out, "written") {
		t.Errorf("the instance could not write its own root: %+v", r.OwnWrite)
	}
	if !r.ConnectOut.OK {
		t.Errorf("the instance could not connect out to 127.0.0.1: %s", r.ConnectOut.Err)
	}
	// The attempts.
	if r.EtcWrite.RC == 0 {
		t.Errorf("wrote /etc: %+v", r.EtcWrite)
	}
	if _, err := os.Stat("/etc/ikabud-sandbox-test"); err == nil {
		os.Remove("/etc/ikabud-sandbox-test")
		t.Errorf("/etc/ikabud-sandbox-test exists")
	}
	if r.OtherWrite.RC == 0 {
		t.Errorf("wrote into another instance's root: %+v", r.OtherWrite)
	}
	if _, err := os.Stat(filepath.Join(l.PublicDir(other), "planted")); err == nil {
		t.Errorf("a file was planted in the other instance's public/")
	}
	if r.OtherProc.Out != "hidden" {
		t.Errorf("the other instance's master (pid %d) is visible: %+v", ost.MainPID, r.OtherProc)
	}
	if r.Meminfo.RC == 0 {
		t.Errorf("read /proc/meminfo (ProcSubset=pid): %.80q", r.Meminfo.Out)
	}
	if r.Setuid.RC == 0 {
		t.Errorf("made a setuid file: %+v", r.Setuid)
	}
	if fi, err := os.Stat(filepath.Join(l.TmpDir(a), "su")); err == nil && fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("%s/su is setuid", l.TmpDir(a))
	}
	if r.RawSocket.OK {
		t.Errorf("opened a raw socket")
	}
	// A port below 1024 is out of reach everywhere (no capability); any
	// other port only where systemd enforces SocketBindDeny= (built with
	// its BPF framework; Debian 12's is not, and panel serve warns there
	// when its HTTP port is one an instance could take).
	if r.BindLowPort.OK {
		t.Errorf("bound 127.0.0.1:%d, a privileged port", lowPort)
	}
	switch {
	case b.SocketBindDenied() && r.BindPanelPort.OK:
		t.Errorf("bound 127.0.0.1:%d although this systemd enforces SocketBindDeny=any", port)
	case !b.SocketBindDenied() && !r.BindPanelPort.OK:
		t.Errorf("could not bind 127.0.0.1:%d (%s), yet SocketBindDenied says this systemd does not enforce SocketBindDeny=", port, r.BindPanelPort.Err)
	case !b.SocketBindDenied():
		t.Logf("this host's systemd does not enforce SocketBindDeny= (-BPF_FRAMEWORK): ports from 1024 up are bindable by instances")
	}
}

// The exposure systemd-analyze gives a running instance's unit is 2.0 or
// better ("OK"); every option that earns it is checked against php-fpm by
// the tests that run pools, and against hostile PHP above.
func TestUnitSecurityExposure(t *testing.T) {
	l, _, id, _ := provisionOne(t, "sec")
	const threshold = 20 // systemd-analyze's scale: 2.0
	out, err := exec.Command("systemd-analyze", "security", "--no-pager", "--threshold="+strconv.Itoa(threshold), l.UnitName(id)).CombinedOutput()
	overall := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "Overall exposure level") {
			overall = strings.TrimSpace(line)
		}
	}
	if err != nil {
		t.Fatalf("systemd-analyze security --threshold=%d %s: %v\n%s", threshold, l.UnitName(id), err, out)
	}
	if overall == "" {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	t.Log(overall)
}
