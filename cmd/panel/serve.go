package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/nginx"
	"github.com/ikabud/panel/internal/procmgr/supervise"
	"github.com/ikabud/panel/internal/procmgr/systemd"
	"github.com/ikabud/panel/internal/sitedb"
	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/web"
	"github.com/ikabud/panel/internal/web/live"
)

const (
	defaultDB     = "sqlite:///var/lib/ikabud/panel.db"
	defaultSocket = "/run/ikabud/panel.sock"
)

// serveConfig is everything `panel serve` is told, from flags or IKABUD_*
// environment variables.
type serveConfig struct {
	db      string
	listen  string
	socket  string
	backend string
	// forceSupervise: --backend supervise on a host booted with systemd.
	forceSupervise bool
	logMemory      string
	logMemoryBytes procmgr.Bytes
	logLevel       string
	initAdmin      string
	socketGroup    string
	dbFile         string
	publicURL      string
	trusted        string
	proxySocket    string
	auditDays      int
	layout         procmgr.Layout
	// The front door: nginx serving the instances' sites.
	httpListen   string
	nginxMode    string
	nginxUnit    string
	nginxConf    string
	nginxInclude string
	// dbAdmin reaches the database server that instances get their
	// databases on; "none": no database server.
	dbAdmin     string
	dbAdminFile string
}

func parseServe(args []string) (serveConfig, error) {
	d := procmgr.DefaultLayout()
	cfg := serveConfig{layout: d}
	fs := newFlagSet("serve")
	fs.StringVar(&cfg.db, "db", envOr("IKABUD_DB", defaultDB), "database: sqlite:///path/panel.db or mysql://user@tcp(host:3306)/db (a password belongs in IKABUD_DB or --db-file, not here)")
	fs.StringVar(&cfg.dbFile, "db-file", envOr("IKABUD_DB_FILE", ""), "read the database DSN from this root-only file")
	fs.StringVar(&cfg.listen, "listen", envOr("IKABUD_LISTEN", "127.0.0.1:8080"), "HTTP address of the web panel and API, or none (behind a proxy on --proxy-socket)")
	fs.StringVar(&cfg.socket, "socket", envOr("IKABUD_SOCKET", defaultSocket), "Unix socket for the command line (root only)")
	fs.StringVar(&cfg.socketGroup, "socket-group", envOr("IKABUD_SOCKET_GROUP", ""), "also let this group use the socket (its members act as the panel user mapped to their uid)")
	fs.StringVar(&cfg.backend, "backend", envOr("IKABUD_BACKEND", "auto"), "process backend: auto (systemd when the host was booted with it, else supervise), systemd or supervise")
	fs.BoolVar(&cfg.forceSupervise, "force-supervise", false, "allow --backend supervise on a host booted with systemd, whose cgroups systemd owns (limits are not guaranteed; for tests)")
	fs.StringVar(&cfg.publicURL, "public-url", envOr("IKABUD_PUBLIC_URL", ""), "the panel's URL as browsers reach it, behind a proxy (https://panel.example.com); form posts and websockets must come from its origin")
	fs.StringVar(&cfg.proxySocket, "proxy-socket", envOr("IKABUD_PROXY_SOCKET", ""), "a Unix socket for a reverse proxy on this host (nginx): only the web user (and root) may connect, and its X-Forwarded-For/-Proto are believed; needs --public-url")
	fs.StringVar(&cfg.trusted, "trusted-proxy", envOr("IKABUD_TRUSTED_PROXY", ""), "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed")
	fs.StringVar(&cfg.logMemory, "log-memory", envOr("IKABUD_LOG_MEMORY", "64M"), "at most this much of instances' log lines held in memory at once, all instances together (16M to 64G); the log files and the journal keep everything")
	fs.IntVar(&cfg.auditDays, "audit-retention-days", envInt("IKABUD_AUDIT_RETENTION_DAYS", 400), "delete audit records older than this many days (0 keeps them all)")
	fs.StringVar(&cfg.logLevel, "log-level", envOr("IKABUD_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.StringVar(&cfg.initAdmin, "init-admin", "", "on a database with no users, create this admin and print its password once")
	fs.StringVar(&cfg.layout.InstancesRoot, "instances-root", envOr("IKABUD_INSTANCES_ROOT", d.InstancesRoot), "where instance files live")
	fs.StringVar(&cfg.layout.ConfigRoot, "config-root", envOr("IKABUD_CONFIG_ROOT", d.ConfigRoot), "where per-instance php-fpm configs live")
	fs.StringVar(&cfg.layout.RuntimeRoot, "runtime-root", envOr("IKABUD_RUNTIME_ROOT", d.RuntimeRoot), "runtime directory (sockets), directly under /run")
	fs.StringVar(&cfg.layout.WebUser, "web-user", envOr("IKABUD_WEB_USER", d.WebUser), "web server user added to each instance's group")
	fs.StringVar(&cfg.httpListen, "http-listen", envOr("IKABUD_HTTP_LISTEN", ":80"), "where nginx serves the instances' sites (:80, 127.0.0.1:8081, ...), or none: the panel manages no web server")
	fs.StringVar(&cfg.nginxMode, "nginx", envOr("IKABUD_NGINX", "auto"), "how nginx runs: auto (the distribution's unit under the systemd backend, else supervised), systemd or supervise")
	fs.StringVar(&cfg.nginxUnit, "nginx-unit", envOr("IKABUD_NGINX_UNIT", "nginx.service"), "the nginx unit under systemd")
	fs.StringVar(&cfg.nginxConf, "nginx-conf", envOr("IKABUD_NGINX_CONF", "/etc/nginx/nginx.conf"), "the main config of the nginx unit (systemd), which must include --nginx-include inside http {}")
	fs.StringVar(&cfg.nginxInclude, "nginx-include", envOr("IKABUD_NGINX_INCLUDE", "/etc/nginx/conf.d/ikabud.conf"), "the file the panel writes for the nginx unit's config to include (Debian's nginx.conf includes conf.d/*.conf)")
	fs.StringVar(&cfg.dbAdmin, "db-admin", envOr("IKABUD_DB_ADMIN", sitedb.DefaultAdminDSN), "the MariaDB account that creates instances' databases and users (a password belongs in IKABUD_DB_ADMIN or --db-admin-file), or none")
	fs.StringVar(&cfg.dbAdminFile, "db-admin-file", envOr("IKABUD_DB_ADMIN_FILE", ""), "read --db-admin from this root-only file")
	fs.StringVar(&cfg.layout.UnitPrefix, "unit-prefix", envOr("IKABUD_UNIT_PREFIX", d.UnitPrefix), "name of the template unit (<prefix>@.service)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return cfg, err
	}
	if len(pos) > 0 {
		return cfg, fmt.Errorf("%w: serve takes no arguments (got %q)", errUsage, pos)
	}
	if err := resolveDSN(&cfg, args); err != nil {
		return cfg, err
	}
	if cfg.dbAdmin, err = secretFromFlags("db-admin", cfg.dbAdmin, cfg.dbAdminFile, args); err != nil {
		return cfg, err
	}
	if err := cfg.layout.Validate(); err != nil {
		return cfg, err
	}
	if cfg.logMemoryBytes, err = procmgr.ParseLogMemory(cfg.logMemory); err != nil {
		return cfg, fmt.Errorf("%w: --%v", errUsage, err)
	}
	if cfg.auditDays < 0 || cfg.auditDays > 100*365 {
		return cfg, fmt.Errorf("%w: --audit-retention-days must be 0 (keep all) to 36500 (got %d)", errUsage, cfg.auditDays)
	}
	if cfg.proxySocket != "" && cfg.publicURL == "" {
		return cfg, fmt.Errorf("%w: --proxy-socket needs --public-url, the address browsers reach the proxy at (https://panel.example.com)", errUsage)
	}
	if cfg.httpListen != "none" {
		if _, err := nginx.ParseListen(cfg.httpListen); err != nil {
			return cfg, fmt.Errorf("%w: --%v", errUsage, err)
		}
	}
	switch cfg.nginxMode {
	case "auto", "systemd", "supervise":
	default:
		return cfg, fmt.Errorf("%w: --nginx must be auto, systemd or supervise (got %q)", errUsage, cfg.nginxMode)
	}
	if cfg.listen == "none" && cfg.proxySocket == "" {
		return cfg, fmt.Errorf("%w: --listen none leaves the web panel unreachable: give --proxy-socket too", errUsage)
	}
	return cfg, nil
}

// dsnPasswordRe finds a password in a MySQL DSN (user:password@...).
var dsnPasswordRe = regexp.MustCompile(`^mysql://[^:@/]*:[^@]*@`)

// resolveDSN takes the DSN from --db-file when given, and refuses a password
// on the command line: every local user, tenants included, can read a
// process's argv in /proc (and a unit's ExecStart over D-Bus); the
// environment and a 0600 file are root's alone.
func resolveDSN(cfg *serveConfig, args []string) error {
	db, err := dbFromFlags(cfg.db, cfg.dbFile, args)
	cfg.db = db
	return err
}

// dbFromFlags is the DSN every command that opens the database takes (serve,
// migrate, user add): from --db-file when given, else --db / IKABUD_DB,
// refusing a password given on the command line.
func dbFromFlags(db, dbFile string, args []string) (string, error) {
	return secretFromFlags("db", db, dbFile, args)
}

// secretFromFlags reads a DSN flag (--NAME, or --NAME-file), refusing a
// password given on the command line.
func secretFromFlags(name, db, dbFile string, args []string) (string, error) {
	if dbFile != "" {
		fi, err := os.Stat(dbFile)
		if err != nil {
			return "", fmt.Errorf("--db-file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("--%s-file %s is readable by others (mode %v): chmod 600 it", name, dbFile, fi.Mode().Perm())
		}
		data, err := os.ReadFile(dbFile)
		if err != nil {
			return "", fmt.Errorf("--%s-file: %w", name, err)
		}
		return strings.TrimSpace(string(data)), nil
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--"+name+"=") || strings.HasPrefix(a, "-"+name+"=") || a == "--"+name || a == "-"+name {
			if dsnPasswordRe.MatchString("mysql://" + strings.TrimPrefix(db, "mysql://")) {
				return "", fmt.Errorf("%w: --%s carries a password, which every local user can read in the process list; put the DSN in %s (an EnvironmentFile= of mode 0600) or in a file given with --%s-file",
					errUsage, name, "IKABUD_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")), name)
			}
		}
	}
	return db, nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// openStore opens and migrates the database.
func openStore(ctx context.Context, dsn string, log *slog.Logger) (*store.DB, error) {
	db, err := store.Open(ctx, dsn, log)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// hasSystemd reports whether the host was booted with systemd.
func hasSystemd() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// chooseBackend picks the process backend: systemd when the host was
// booted with it, the built-in supervisor otherwise; --backend overrides.
func chooseBackend(flag string, systemdBooted, forceSupervise bool) (string, error) {
	switch flag {
	case "auto":
		if systemdBooted {
			return "systemd", nil
		}
		return "supervise", nil
	case "systemd":
		if !systemdBooted {
			return "", errors.New("--backend systemd: this host was not booted with systemd (/run/systemd/system is missing); use --backend supervise")
		}
		return "systemd", nil
	case "supervise":
		if systemdBooted && !forceSupervise {
			// systemd owns the cgroup tree there: it may move the
			// supervisor's processes or remove its cgroups, and with them
			// every instance's memory, CPU and task limits, silently.
			return "", errors.New("--backend supervise: this host was booted with systemd, which owns the cgroups the supervisor would set limits in; " +
				"use --backend systemd (or add --force-supervise to run without guaranteed limits)")
		}
		return "supervise", nil
	}
	return "", fmt.Errorf("%w: --backend must be auto, systemd or supervise (got %q)", errUsage, flag)
}

func openBackend(ctx context.Context, cfg serveConfig, log *slog.Logger) (instances.Backend, func() error, error) {
	name, err := chooseBackend(cfg.backend, hasSystemd(), cfg.forceSupervise)
	if err != nil {
		return nil, nil, err
	}
	if name == "systemd" {
		b, err := systemd.New(ctx, systemd.Options{Layout: cfg.layout, Log: log})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	if hasSystemd() {
		log.Warn("the built-in supervisor runs on a host booted with systemd (--force-supervise): systemd owns the cgroups, so instance limits are not guaranteed")
	}
	// The supervisor's own state, logs and cgroups are named after the unit
	// prefix, so that two panels (or a test's) on one host never share them.
	p := cfg.layout.UnitPrefix
	b, err := supervise.New(ctx, supervise.Options{Layout: cfg.layout, Log: log,
		StateDir: "/run/" + p + "-supervise", LogDir: "/var/log/" + p, CgroupParent: p})
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

// initAdmin creates the first admin on a database that has no users yet,
// and prints its password: the only time it is shown.
func initAdmin(ctx context.Context, db *store.DB, a *auth.Service, name string, stdout io.Writer) error {
	users, err := db.ListUsers(ctx)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return nil
	}
	password, err := auth.GeneratePassword()
	if err != nil {
		return err
	}
	if _, err := a.AddUser(ctx, name, auth.RoleAdmin, password, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created the first admin: user %s, password %s (shown once)\n", name, password)
	return nil
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args)
	if err != nil {
		return err
	}
	procmgr.LogMemory.SetLimit(int64(cfg.logMemoryBytes))
	log, err := newLogger(stderr, cfg.logLevel)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("panel serve must run as root: it creates Unix users and services")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	unlock, err := lockDaemon(cfg.socket)
	if err != nil {
		return err
	}
	defer unlock()

	db, err := openStore(ctx, cfg.db, log)
	if err != nil {
		return err
	}
	defer db.Close()
	authSvc := auth.NewService(db, log)
	if cfg.initAdmin != "" {
		if err := initAdmin(ctx, db, authSvc, cfg.initAdmin, stdout); err != nil {
			return err
		}
	}
	backend, closeBackend, err := openBackend(ctx, cfg, log)
	if err != nil {
		return err
	}
	// Closing the backend leaves every instance running.
	defer closeBackend()

	var front instances.FrontDoor
	if cfg.httpListen != "none" {
		m, closeFront, err := openFrontDoor(ctx, cfg, backend, log)
		if err != nil {
			return err
		}
		defer closeFront()
		front = m
	}
	var dbAdmin *sitedb.Admin
	var warnings []string
	if cfg.dbAdmin != "none" {
		if dbAdmin, err = sitedb.Open(cfg.dbAdmin); err != nil {
			return err
		}
		defer dbAdmin.Close()
		warnings = databaseWarnings(ctx, dbAdmin.Socket(), log)
	}
	var installer instances.Installer
	if dbAdmin != nil {
		installer = cms.New(cms.Options{Layout: cfg.layout, DB: dbAdmin, Log: log})
	} else {
		installer = cms.New(cms.Options{Layout: cfg.layout, Log: log})
	}
	svc := instances.New(db, backend, instances.Options{Layout: cfg.layout, Log: log, FrontDoor: front, Installer: installer})
	trusted, err := parseTrusted(cfg.trusted)
	if err != nil {
		return err
	}
	srv, err := web.New(web.Options{Instances: svc, Accounts: authSvc, Log: log, Version: version,
		PublicURL: cfg.publicURL, ListenAddr: cfg.listen, TrustedProxies: trusted, Warnings: func() []string { return warnings }})
	if err != nil {
		return err
	}
	hub := live.New(svc, live.Options{
		Log:         log,
		System:      auth.Principal{Name: "panel", Role: auth.RoleAdmin},
		CheckOrigin: srv.CheckOrigin,
		// A FastCGI ping to an ondemand pool spawns a worker that lives
		// process_idle_timeout (10 s): probing every instance often would
		// keep thousands of workers alive. An open instance page probes its
		// own instance when it loads.
		HealthEvery: 2 * time.Minute,
		StillValid: func(ctx context.Context, v live.Viewer) bool {
			return authSvc.SessionValid(ctx, v.SessionID)
		},
	})
	srv.SetLive(hub)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	select {
	case <-svc.Started():
	case <-gctx.Done():
		return g.Wait()
	}
	unixLn, err := listenUnix(cfg.socket, cfg.socketGroup)
	if err != nil {
		stop()
		g.Wait()
		return err
	}
	g.Go(func() error { return srv.Serve(gctx, unixLn) })
	g.Go(func() error { return hub.Run(gctx) })
	g.Go(func() error { return srv.WatchRevocations(gctx) })
	g.Go(func() error { housekeeping(gctx, authSvc, db, cfg.auditDays, log); return nil })
	if cfg.listen != "none" {
		if portTenantsCanTake(cfg.listen, backend) {
			log.Warn("instances' PHP could bind the panel's HTTP port while the panel is down and serve a false sign-in page on it; "+
				"run behind --proxy-socket with --listen none, or listen on a port below 1024", "addr", cfg.listen, "backend", backend.Name())
		}
		g.Go(func() error { return serveTCP(gctx, srv, cfg.listen, log, stdout, backend.Name(), cfg.socket) })
	}
	if cfg.proxySocket != "" {
		ln, uid, err := listenProxy(cfg.proxySocket, cfg.layout.WebUser)
		if err != nil {
			stop()
			g.Wait()
			return err
		}
		g.Go(func() error { return srv.ServeProxy(gctx, ln, uid, 0) })
		log.Info("panel serving its reverse proxy", "socket", cfg.proxySocket, "public_url", cfg.publicURL, "web_user", cfg.layout.WebUser)
		fmt.Fprintf(stdout, "Ikabud Panel serves %s through its proxy socket %s (backend %s)\n", cfg.publicURL, cfg.proxySocket, backend.Name())
	}
	log.Info("panel serving", "socket", cfg.socket, "backend", backend.Name(), "db", db.Dialect(), "version", version)

	<-gctx.Done()
	log.Info("panel stopping; instances keep running")
	// The group ends when the servers, the hub and the service loop have;
	// the deferred closes of the backend and the database run after them.
	// Bounded: a stuck handler must not keep the panel from exiting.
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		err = nil
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// portTenantsCanTake reports whether instances' code could bind addr's port
// while the panel is down. A port below the kernel's
// ip_unprivileged_port_start needs a capability no instance has; above it,
// only a systemd that enforces the units' SocketBindDeny= keeps it out.
func portTenantsCanTake(addr string, b any) bool {
	if sb, ok := b.(interface{ SocketBindDenied() bool }); ok && sb.SocketBindDenied() {
		return false
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return true
	}
	start := 1024
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			start = n
		}
	}
	return port == 0 || port >= start
}

// serveTCP serves HTTP on addr. A taken address (a tenant's PHP may hold
// the panel's port while the panel restarts) does not stop the panel: the
// Unix socket and the reconciler keep running, and the listen is retried,
// loudly, until it succeeds.
func serveTCP(ctx context.Context, srv *web.Server, addr string, log *slog.Logger, stdout io.Writer, backend, socket string) error {
	wait := time.Second
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			log.Info("panel serving HTTP", "http", "http://"+ln.Addr().String())
			fmt.Fprintf(stdout, "Ikabud Panel is running at http://%s (backend %s); the command line talks to %s\n", ln.Addr(), backend, socket)
			return srv.Serve(ctx, ln)
		}
		log.Error("cannot listen for HTTP; the command line's socket and every instance keep working; retrying", "addr", addr, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// housekeeping deletes expired sessions and audit records past their
// retention, at start and then hourly.
func housekeeping(ctx context.Context, a *auth.Service, db *store.DB, auditDays int, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := a.PurgeExpired(ctx); err != nil && ctx.Err() == nil {
			log.Warn("purge expired sessions", "err", err)
		} else if n > 0 {
			log.Info("expired sessions purged", "count", n)
		}
		if auditDays > 0 {
			cut := time.Now().AddDate(0, 0, -auditDays)
			if n, err := db.DeleteAuditBefore(ctx, cut); err != nil && ctx.Err() == nil {
				log.Warn("delete old audit records", "err", err)
			} else if n > 0 {
				log.Info("audit records past retention deleted", "count", n, "before", cut.Format(time.DateOnly))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// listenProxy makes the reverse proxy's socket: group the web user's, mode
// 0660, so that tenants (never members of that group) cannot connect; the
// server also checks each peer's uid.
func listenProxy(path, webUser string) (net.Listener, int, error) {
	u, err := user.Lookup(webUser)
	if err != nil {
		return nil, 0, fmt.Errorf("--proxy-socket: web user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, 0, err
	}
	os.Remove(path) // a stale socket of a daemon that died; the lock says none runs
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, 0, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		ln.Close()
		return nil, 0, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, 0, err
	}
	return ln, uid, nil
}

// parseTrusted reads --trusted-proxy: addresses or CIDRs, comma-separated.
func parseTrusted(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%w: --trusted-proxy %q: not an address or CIDR", errUsage, part)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// lockDaemon makes sure one daemon runs per socket.
func lockDaemon(socket string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, err
	}
	path := socket + ".lock"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another panel daemon is running (lock %s held)", path)
	}
	return func() { f.Close() }, nil
}

// listenUnix makes the socket the command line speaks to: root's only, or
// also group's when a group is given (for local accounts mapped to panel
// users with `panel user add --uid`). The process umask is left alone (it
// is process-wide, and masters may be forking meanwhile): the socket is
// created 0755 under the usual umask, which lets only root connect, and
// then narrowed or widened.
func listenUnix(path, group string) (net.Listener, error) {
	os.Remove(path) // a stale socket of a daemon that died; the lock says none runs
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	mode, gid := os.FileMode(0o600), 0
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("--socket-group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
		mode = 0o660
	}
	if err := os.Chown(path, 0, gid); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
