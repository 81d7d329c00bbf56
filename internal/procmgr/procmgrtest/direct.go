package procmgrtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// DirectMaster is php-fpm started by hand with an instance's own config, as
// the instance's user, in a session of its own: what a backend does,
// without the backend. Benchmarks use it as the floor of their figures.
type DirectMaster struct{ cmd *exec.Cmd }

// StartMasterDirectly starts id's php-fpm master (the instance must be
// provisioned and not running); wait for its socket with procmgr.WaitReady.
func StartMasterDirectly(l procmgr.Layout, id procmgr.InstanceID) (*DirectMaster, error) {
	u, err := user.Lookup(id.UserName())
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	rt := l.RuntimeDir(id)
	if err := os.MkdirAll(rt, 0o750); err != nil {
		return nil, err
	}
	if err := os.Chown(rt, uid, gid); err != nil {
		return nil, err
	}
	cmd := exec.Command(l.FPMBinaryLink(id), "--nodaemonize", "--fpm-config", l.FPMConfigPath(id))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &DirectMaster{cmd: cmd}, nil
}

// Stop ends the master (SIGQUIT, then its whole session's group killed
// after 5 s) and waits for it.
func (m *DirectMaster) Stop() {
	m.cmd.Process.Signal(syscall.SIGQUIT)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// TimeAccountCreation times what making an instance's account takes with
// the system's tools alone: the same useradd as the panel's, and webUser
// added to the new group. The user and group are removed afterwards,
// outside the time.
func TimeAccountCreation(webUser, name string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.Command("useradd", procmgr.UserAddArgs(name, "/nonexistent", "benchmark floor")...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("useradd: %v %s", err, out)
	}
	if out, err := exec.Command("gpasswd", "--add", webUser, name).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("gpasswd: %v %s", err, out)
	}
	took := time.Since(t0)
	exec.Command("gpasswd", "--delete", webUser, name).Run()
	exec.Command("userdel", name).Run()
	exec.Command("groupdel", name).Run()
	return took, nil
}

// MasterPIDs lists the php-fpm masters whose config path contains match
// (their command line is "php-fpm: master process (<config>)").
func MasterPIDs(match string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.HasPrefix(string(cl), "php-fpm: master process") && strings.Contains(string(cl), match) {
			out = append(out, pid)
		}
	}
	return out
}
