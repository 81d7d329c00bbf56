package procmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// What a tenant's code can leave behind outside its own tree, found by its
// uid: processes that left the master's process group (setsid) and, where
// no cgroup tracks them, outlive a stop; files in the shared temporary
// places; System V IPC objects. Instance uids are reused after a removal,
// so the next tenant given the uid must find none of it.

// UIDProcesses lists the live processes whose real, effective or saved uid
// is uid. Zombies are left out: they run nothing, and go when their parent
// (or the subreaper) reaps them.
func UIDProcesses(uid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if st, ok := strings.CutPrefix(line, "State:"); ok && strings.HasPrefix(strings.TrimSpace(st), "Z") {
				break
			}
			v, ok := strings.CutPrefix(line, "Uid:")
			if !ok {
				continue
			}
			f := strings.Fields(v)
			for _, s := range f[:min(3, len(f))] {
				if n, err := strconv.Atoi(s); err == nil && n == uid {
					out = append(out, pid)
					break
				}
			}
			break
		}
	}
	return out
}

// KillUID sends SIGKILL to every process of uid until none is left, or
// fails when ctx ends first. uid 0 is refused.
func KillUID(ctx context.Context, uid int) error {
	if uid <= 0 {
		return fmt.Errorf("procmgr: refusing to kill the processes of uid %d", uid)
	}
	for {
		pids := UIDProcesses(uid)
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("procmgr: processes of uid %d still there (%v): %w", uid, pids, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// sharedTempDirs are the places every user may write.
var sharedTempDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// RemoveUIDLeftovers deletes what uid owns at the top of the shared
// temporary places (each entry whole; a link is removed, never followed)
// and its System V shared memory, semaphores and message queues. uid 0 is
// refused. It goes on past failures and reports them all.
func RemoveUIDLeftovers(uid int) error {
	if uid <= 0 {
		return fmt.Errorf("procmgr: refusing to remove what uid %d owns", uid)
	}
	var errs []error
	for _, dir := range sharedTempDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil || int(st.Uid) != uid {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, kind := range []struct {
		file, idCol string
		remove      func(id int) error
	}{
		{"/proc/sysvipc/shm", "shmid", func(id int) error { _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); return err }},
		{"/proc/sysvipc/sem", "semid", func(id int) error {
			_, _, e := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), 0, unix.IPC_RMID, 0, 0, 0)
			return errnoErr(e)
		}},
		{"/proc/sysvipc/msg", "msqid", func(id int) error {
			_, _, e := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_RMID, 0)
			return errnoErr(e)
		}},
	} {
		for _, id := range ipcOwnedBy(kind.file, kind.idCol, uid) {
			if err := kind.remove(id); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EIDRM) {
				errs = append(errs, fmt.Errorf("procmgr: remove %s %d of uid %d: %w", filepath.Base(kind.file), id, uid, err))
			}
		}
	}
	return errors.Join(errs...)
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// ipcOwnedBy lists the ids in a /proc/sysvipc table whose owner or creator
// is uid.
func ipcOwnedBy(file, idCol string, uid int) []int {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return nil
	}
	col := map[string]int{}
	for i, name := range strings.Fields(lines[0]) {
		col[name] = i
	}
	idI, ok1 := col[idCol]
	uidI, ok2 := col["uid"]
	cuidI, ok3 := col["cuid"]
	if !ok1 || !ok2 || !ok3 {
		return nil
	}
	var out []int
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) <= max(idI, uidI, cuidI) {
			continue
		}
		if f[uidI] == strconv.Itoa(uid) || f[cuidI] == strconv.Itoa(uid) {
			if id, err := strconv.Atoi(f[idI]); err == nil {
				out = append(out, id)
			}
		}
	}
	return out
}
