package nginx_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr/nginx"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/procmgr/systemd"
)

// Under systemd nginx is a unit the panel starts and reloads over D-Bus (in
// production Debian's nginx.service). The test runs its own unit, with its
// own main config, so that it never touches the host's /etc/nginx.
func TestUnitRunnerReloadsThroughSystemd(t *testing.T) {
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("needs a running systemd as PID 1 (found %q): run with scripts/with-systemd.sh or make test", strings.TrimSpace(string(comm)))
	}
	r := newRig(t) // for its layout and port; its supervised nginx is replaced
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.run.Stop(ctx)
	l := procmgrtest.NewLayout(t)
	b, err := systemd.New(ctx, systemd.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unit := l.UnitPrefix + "-nginx.service"
	unitPath := "/etc/systemd/system/" + unit
	main := r.run.Main
	pid := r.run.PIDFile
	unitText := "[Service]\nType=simple\nExecStart=/usr/sbin/nginx -c " + main + " -g 'daemon off;'\nExecReload=/bin/kill -HUP $MAINPID\nPIDFile=" + pid + "\n"
	if err := os.WriteFile(unitPath, []byte(unitText), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("systemctl", "stop", unit).Run()
		os.Remove(unitPath)
		exec.Command("systemctl", "daemon-reload").Run()
	})
	if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
		t.Fatalf("daemon-reload: %v %s", err, out)
	}
	runner := nginx.UnitRunner{Units: b.Units(), Unit: unit, Main: main}
	ln, _ := nginx.ParseListen(r.addr)
	m, err := nginx.New(nginx.Options{Layout: r.layout, Listen: ln, Runner: runner})
	if err != nil {
		t.Fatal(err)
	}
	if up, _ := m.Up(ctx); up {
		t.Fatal("unit up before Start")
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	up, detail := m.Up(ctx)
	if !up || !strings.Contains(detail, unit) {
		t.Fatalf("Up = %v %q", up, detail)
	}
	mainPID := func() string {
		out, _ := exec.Command("systemctl", "show", "-p", "MainPID", "--value", unit).Output()
		return strings.TrimSpace(string(out))
	}
	before := mainPID()
	a := r.site(t, "site-a", 4001, "a.example.test")
	if err := m.Publish(ctx, a); err != nil {
		t.Fatalf("Publish through the unit: %v", err)
	}
	if code, body := r.get(t, "a.example.test", "/hello.txt"); code != 200 || !strings.Contains(body, "site-a") {
		t.Errorf("%d %q", code, body)
	}
	// A reload, not a restart: the master is the same process.
	if after := mainPID(); after != before || after == "0" {
		t.Errorf("MainPID %s -> %s, want a reload of the same master", before, after)
	}
	// Stopped behind the panel's back: Up says so.
	exec.Command("systemctl", "stop", unit).Run()
	if up, detail := m.Up(ctx); up || !strings.Contains(detail, "inactive") {
		t.Errorf("after systemctl stop: Up = %v %q", up, detail)
	}
}
