package supervise

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A master's first moments. The supervisor does not exec php-fpm directly:
// it re-executes the panel's own binary under the name sandboxArg0, as
// root, already in the instance's cgroup. That process gives itself a mount
// namespace of its own with a fresh /proc that shows only the processes of
// its own user (hidepid=invisible) and only their part of /proc
// (subset=pid: no /proc/sys, /proc/meminfo and the rest), drops to the
// instance's user and groups, and execs php-fpm, keeping its PID. This is
// what systemd's ProtectProc=invisible and ProcSubset=pid give the units:
// without it, tenant code could list every process of the host, other
// tenants' included, and read their command lines.

// sandboxArg0 is argv[0] of the panel's binary re-executed as a master's
// first process.
const sandboxArg0 = "ikabud-fpm-sandbox"

// sandboxExit is its exit status when it cannot set the master up
// (systemd's is 226, EXIT_NAMESPACE; the supervisor reports either).
const sandboxExit = 226

func init() {
	// Any binary that links the supervisor (the panel, its test binaries)
	// can be the sandbox: the supervisor execs /proc/self/exe.
	if len(os.Args) > 0 && os.Args[0] == sandboxArg0 {
		os.Exit(sandboxMain(os.Args[1:]))
	}
}

// sandboxArgs is the sandbox's command line for uid and gid, the
// directory the master starts in, and the master's argv (argv[0] its path).
func sandboxArgs(uid, gid int, dir string, argv []string) []string {
	return append([]string{sandboxArg0, strconv.Itoa(uid), strconv.Itoa(gid), dir, "--"}, argv...)
}

// execFailed is the sandbox's exit status when the master's program cannot
// be run (systemd's 203, EXIT_EXEC).
const execFailed = 203

// sandboxMain runs in the re-executed process: UID GID DIR -- PATH [ARG].
// It returns only on failure; its error goes to stderr, the instance's log.
func sandboxMain(args []string) int {
	// init runs on the main thread; the namespace is this thread's, and
	// the exec below must come from it.
	runtime.LockOSThread()
	fail := func(step string, err error) int {
		fmt.Fprintf(os.Stderr, "ikabud sandbox: %s: %v\n", step, err)
		return sandboxExit
	}
	if len(args) < 5 || args[3] != "--" {
		return fail("arguments", errors.New("want UID GID DIR -- PATH [ARG]"))
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || uid <= 0 || gid <= 0 {
		return fail("arguments", fmt.Errorf("uid %q and gid %q must be numbers above 0", args[0], args[1]))
	}
	if err := hideProcesses(); errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		// A container that may not mount (Docker without CAP_SYS_ADMIN):
		// the master runs, and its log says what it can see.
		fmt.Fprintf(os.Stderr, "ikabud sandbox: WARNING: other processes are not hidden from this instance (%v): its PHP can list every process of the host\n", err)
	} else if err != nil {
		return fail("hide other processes", err)
	}
	// Go applies these to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fail("setgroups", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fail("setgid", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fail("setuid", err)
	}
	// As the instance's user: the directory is the tenant's, and root
	// never follows a path a tenant could change.
	if err := unix.Chdir(args[2]); err != nil {
		return fail("chdir "+args[2], err)
	}
	err := unix.Exec(args[4], args[4:], os.Environ())
	fmt.Fprintf(os.Stderr, "ikabud sandbox: exec %s: %v\n", args[4], err)
	return execFailed
}

// hideProcesses gives the calling thread a mount namespace of its own with
// a /proc that shows only the processes of the user it will run as.
func hideProcesses() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("mount namespace: %w", err)
	}
	// Mounts and unmounts of the host still reach the master (a disk
	// mounted later under the instances root); its own never leave.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("mount propagation: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible,subset=pid"); err != nil {
		return fmt.Errorf("mount /proc with hidepid=invisible: %w", err)
	}
	return nil
}
