package procmgr

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"

	"github.com/coreos/go-systemd/v22/unit"
)

// FPMDirective is one "key = value" line of a php-fpm config, in order.
type FPMDirective struct {
	Section string
	Key     string
	Value   string
}

// FPMOptions are what differs in the php-fpm config between backends.
type FPMOptions struct {
	// ErrorLog is where the master writes errors and the workers' output:
	// ErrorLogSyslog or ErrorLogStderr.
	ErrorLog string
}

// The error_log targets.
const (
	// ErrorLogSyslog: under systemd stderr is a journald stream that
	// php-fpm cannot reopen (ENXIO), so errors go to syslog, which lands in
	// the unit's journal.
	ErrorLogSyslog = "syslog"
	// ErrorLogStderr: under the built-in supervisor stderr is a pipe (a
	// FIFO) that the panel reads.
	ErrorLogStderr = "/proc/self/fd/2"
)

// FPMDirectives is the php-fpm master config of an instance under systemd,
// as data.
func FPMDirectives(l Layout, s Spec) []FPMDirective {
	return FPMDirectivesWith(l, s, FPMOptions{ErrorLog: ErrorLogSyslog})
}

// FPMDirectivesWith is the php-fpm master config of an instance as data:
// the renderer writes exactly these lines, and the fuzz tests parse the
// rendered file back and compare it with this list.
func FPMDirectivesWith(l Layout, s Spec, opt FPMOptions) []FPMDirective {
	id := s.ID
	var d []FPMDirective
	g := func(k, v string) { d = append(d, FPMDirective{"global", k, v}) }
	p := func(k, v string) { d = append(d, FPMDirective{string(id), k, v}) }

	g("pid", l.PIDPath(id))
	if opt.ErrorLog == ErrorLogStderr {
		g("error_log", ErrorLogStderr)
	} else {
		g("error_log", ErrorLogSyslog)
		g("syslog.ident", id.UserName())
		g("syslog.facility", "daemon")
	}
	g("log_level", "notice")
	g("log_limit", "4096")
	g("daemonize", "no")
	// php-fpm would otherwise send a status line to systemd every 10 s.
	g("systemd_interval", "0")
	// A reload (USR2) asks the workers to finish what they serve before
	// the master starts again; 0, the default, kills them at once, and
	// every request in flight is cut (a 502).
	g("process_control_timeout", strconv.Itoa(s.Pool.RequestTerminateTimeout())+"s")

	p("listen", l.SocketPath(id))
	p("listen.mode", "0660")
	p("listen.backlog", "511")
	p("pm", string(s.Pool.PM))
	p("pm.max_children", strconv.Itoa(s.Pool.MaxChildren))
	switch s.Pool.PM {
	case PMDynamic:
		p("pm.start_servers", strconv.Itoa(s.Pool.StartServers))
		p("pm.min_spare_servers", strconv.Itoa(s.Pool.MinSpareServers))
		p("pm.max_spare_servers", strconv.Itoa(s.Pool.MaxSpareServers))
	case PMOndemand:
		// 10 to 14 s, by instance: pools probed together must not see
		// their idle workers expire together (seen here with 50 sites on
		// 2 cores: many missed php-fpm's 1 s grace and were SIGKILLed).
		p("pm.process_idle_timeout", strconv.Itoa(10+int(idHash(id)%5))+"s")
	}
	p("pm.max_requests", strconv.Itoa(s.Pool.MaxRequests))
	p("request_terminate_timeout", strconv.Itoa(s.Pool.RequestTerminateTimeout())+"s")
	p("pm.status_path", "/status")
	p("ping.path", "/ping")
	p("ping.response", "pong")
	// PHP's own errors (error_log(), warnings, fatals) must land in the
	// instance's log; without an error_log PHP-FPM sends them down the
	// FastCGI connection to the web server instead. Under the supervisor
	// the worker's stderr is a pipe to the master (catch_workers_output),
	// reopened through /proc. Under systemd the workers log to syslog
	// themselves, under the instance's ident, and journald files the lines
	// under the unit (the master does not relay workers' output to syslog).
	if opt.ErrorLog == ErrorLogStderr {
		p("php_admin_value[error_log]", ErrorLogStderr)
	} else {
		p("php_admin_value[error_log]", ErrorLogSyslog)
		p("php_admin_value[syslog.ident]", id.UserName())
		p("php_admin_value[syslog.facility]", "daemon")
	}
	p("catch_workers_output", "yes")
	p("decorate_workers_output", "no")
	p("clear_env", "yes")
	p("security.limit_extensions", ".php")
	p("chdir", l.PublicDir(id))
	p("env[TMPDIR]", l.TmpDir(id))
	for _, e := range s.Env {
		p("env["+e.Key+"]", `"`+e.Value+`"`)
	}
	inst := l.InstanceDir(id)
	// The instance's own tree, and the distribution's PHP libraries
	// (world-readable code that Debian's packaged CMSs require by absolute
	// path: DokuWiki's phpseclib, SimplePie, GeSHi).
	p("php_admin_value[open_basedir]", inst+"/:"+SystemPHPLibraries)
	p("php_admin_value[sys_temp_dir]", l.TmpDir(id))
	p("php_admin_value[upload_tmp_dir]", l.TmpDir(id))
	p("php_admin_value[session.save_path]", l.SessionsDir(id))
	p("php_admin_value[memory_limit]", s.Pool.MemoryLimit.String())
	p("php_admin_value[max_execution_time]", strconv.Itoa(s.Pool.MaxExecutionTime))
	p("php_admin_value[upload_max_filesize]", s.Pool.UploadMax.String())
	// A multipart body carries headers beside the file: leave room for them.
	p("php_admin_value[post_max_size]", (s.Pool.UploadMax + 1<<20).String())
	p("php_admin_flag[log_errors]", "on")
	p("php_admin_flag[display_errors]", "off")
	p("php_admin_flag[expose_php]", "off")
	return d
}

// idHash spreads instances over small ranges (idle timeouts).
func idHash(id InstanceID) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()
}

// SystemPHPLibraries is where Debian installs PHP libraries (php-*
// packages) that packaged applications include.
const SystemPHPLibraries = "/usr/share/php/"

// RenderFPMConfig writes an instance's whole php-fpm master config under
// systemd: one [global] section and one pool named after the instance.
func RenderFPMConfig(l Layout, s Spec) []byte {
	return RenderFPMConfigWith(l, s, FPMOptions{ErrorLog: ErrorLogSyslog})
}

// RenderFPMConfigWith writes an instance's whole php-fpm master config.
func RenderFPMConfigWith(l Layout, s Spec, opt FPMOptions) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "; php-fpm master config of instance %s, written by Ikabud Panel.\n", s.ID)
	b.WriteString("; Do not edit: the panel rewrites it from its database.\n")
	section := ""
	for _, d := range FPMDirectivesWith(l, s, opt) {
		if d.Section != section {
			if section != "" {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "[%s]\n", d.Section)
			section = d.Section
		}
		fmt.Fprintf(&b, "%s = %s\n", d.Key, d.Value)
	}
	return b.Bytes()
}

// UnitTemplateOptions is the template unit every instance runs under. The
// per-instance parts come from the instance name (%i): user, config path,
// runtime and writable directories. Limits here are defaults; each instance's
// own are applied with SetUnitProperties, which needs no daemon-reload.
func UnitTemplateOptions(l Layout) []*unit.UnitOption {
	o := unit.NewUnitOption
	cfg := l.ConfigRoot + "/instances/%i"
	return []*unit.UnitOption{
		o("Unit", "Description", "Ikabud instance %i (PHP-FPM)"),
		o("Unit", "After", "network.target"),
		// Five crashes in ten seconds leave the unit failed rather than
		// restarting forever.
		o("Unit", "StartLimitIntervalSec", "10s"),
		o("Unit", "StartLimitBurst", "5"),

		o("Service", "Type", "notify"),
		o("Service", "User", UserPrefix+"%i"),
		o("Service", "Group", UserPrefix+"%i"),
		o("Service", "ExecStart", cfg+"/php-fpm --nodaemonize --fpm-config "+cfg+"/php-fpm.conf"),
		o("Service", "ExecReload", "/bin/kill -USR2 $MAINPID"),
		o("Service", "RuntimeDirectory", l.RuntimeRoot[len("/run/"):]+"/%i"),
		o("Service", "RuntimeDirectoryMode", "0750"),
		o("Service", "Restart", "on-failure"),
		o("Service", "RestartSec", "100ms"),
		o("Service", "TimeoutStartSec", "30s"),
		o("Service", "TimeoutStopSec", "30s"),
		o("Service", "KillMode", "mixed"),
		o("Service", "UMask", "0027"),

		o("Service", "MemoryAccounting", "yes"),
		o("Service", "CPUAccounting", "yes"),
		o("Service", "TasksAccounting", "yes"),
		o("Service", "MemoryMax", Defaults.MemoryMax),
		// No swap: MemoryMax would otherwise bound only the RAM part.
		o("Service", "MemorySwapMax", "0"),
		o("Service", "CPUQuota", Defaults.CPUQuota),
		// The quota is enforced per 2 ms, not the kernel's 100 ms: an
		// instance with several busy processes otherwise takes every core
		// for the first part of each period (its quota at full width), and
		// other instances' requests wait that long.
		o("Service", "CPUQuotaPeriodSec", "2ms"),
		o("Service", "TasksMax", Defaults.TasksMax),

		o("Service", "NoNewPrivileges", "yes"),
		o("Service", "CapabilityBoundingSet", ""),
		o("Service", "AmbientCapabilities", ""),
		o("Service", "ProtectSystem", "strict"),
		o("Service", "ProtectHome", "yes"),
		o("Service", "PrivateTmp", "yes"),
		o("Service", "ProtectProc", "invisible"),
		// Only the process part of /proc: no /proc/sys, /proc/kcore,
		// /proc/meminfo and the rest (PHP's sys_getloadavg() returns false).
		o("Service", "ProcSubset", "pid"),
		// Mounts made inside the unit stay there (it has its own mount
		// namespace already, for ProtectSystem).
		o("Service", "PrivateMounts", "yes"),
		// Device access is limited by the cgroup (null, zero, random, tty,
		// ...), not by a private /dev: same effect for an unprivileged
		// user, without the mounts. ProtectKernelTunables, ProtectKernelLogs
		// and ProtectControlGroups are left out for the same reason: they
		// remount /proc/sys, /sys and every cgroup hierarchy read-only, which
		// the instance user cannot write anyway, and those remounts made a
		// batch start of 200 instances take 5.5 s instead of 3 s here.
		o("Service", "DevicePolicy", "closed"),
		o("Service", "ProtectKernelModules", "yes"),
		o("Service", "ProtectClock", "yes"),
		o("Service", "ProtectHostname", "yes"),
		o("Service", "RestrictSUIDSGID", "yes"),
		o("Service", "RestrictRealtime", "yes"),
		o("Service", "RestrictNamespaces", "yes"),
		o("Service", "LockPersonality", "yes"),
		// The instance user's shared memory and semaphores are removed
		// when it stops, so they cannot outlive it (PrivateIPC= would
		// also hide them from others, but its namespace made a batch start
		// of 200 instances a second slower here).
		o("Service", "RemoveIPC", "yes"),
		o("Service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
		// A pool listens on its Unix socket only; PHP connects out over
		// IP (APIs, updates, mail) but never listens on a port: no bind to
		// any IP port, so no tenant can take the panel's port (or another
		// local service's) while it restarts. connect() is unaffected.
		o("Service", "SocketBindDeny", "any"),
		o("Service", "SystemCallArchitectures", "native"),
		o("Service", "SystemCallFilter", "@system-service"),
		// And of that, not the privileged calls (chown, setuid, ...) nor
		// the resource ones (setrlimit, sched_setaffinity, ...): php-fpm run
		// as its user needs none of them.
		o("Service", "SystemCallFilter", "~@privileged @resources"),
		o("Service", "SystemCallErrorNumber", "EPERM"),
		o("Service", "ReadWritePaths", l.InstancesRoot+"/%i"),
	}
}

// RenderUnitTemplate serialises the template unit.
func RenderUnitTemplate(l Layout) []byte {
	b, err := io.ReadAll(unit.Serialize(UnitTemplateOptions(l)))
	if err != nil {
		// Serialize reads from memory; it cannot fail.
		panic(err)
	}
	return b
}

// LimitOptions are an instance's own limits as unit options, the same values
// the systemd backend applies with SetUnitProperties.
func LimitOptions(lim Limits) []*unit.UnitOption {
	o := unit.NewUnitOption
	return []*unit.UnitOption{
		o("Service", "MemoryMax", strconv.FormatUint(uint64(lim.MemoryMax), 10)),
		o("Service", "CPUQuota", lim.CPUQuota.String()),
		o("Service", "TasksMax", strconv.Itoa(lim.TasksMax)),
	}
}

// RenderLimits serialises an instance's limits as a drop-in.
func RenderLimits(lim Limits) []byte {
	b, err := io.ReadAll(unit.Serialize(LimitOptions(lim)))
	if err != nil {
		panic(err)
	}
	return b
}
