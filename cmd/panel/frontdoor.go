package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/nginx"
	"github.com/ikabud/panel/internal/procmgr/systemd"
	"github.com/ikabud/panel/internal/sitedb"
)

// openFrontDoor sets nginx up to serve the instances' sites: under the
// systemd backend through the distribution's unit (nginx.service), whose
// config includes the panel's part; elsewhere as the panel's own child. It
// returns once nginx runs.
func openFrontDoor(ctx context.Context, cfg serveConfig, backend instances.Backend, log *slog.Logger) (*nginx.Manager, func(), error) {
	ln, err := nginx.ParseListen(cfg.httpListen)
	if err != nil {
		return nil, nil, err
	}
	mode := cfg.nginxMode
	sd, isSystemd := backend.(*systemd.Backend)
	if mode == "auto" {
		mode = "supervise"
		if isSystemd {
			mode = "systemd"
		}
	}
	var runner nginx.Runner
	closeRunner := func() {}
	switch mode {
	case "systemd":
		if !isSystemd {
			return nil, nil, fmt.Errorf("--nginx systemd needs the systemd backend (this panel runs %s)", backend.Name())
		}
		runner = nginx.UnitRunner{Units: sd.Units(), Unit: cfg.nginxUnit, Main: cfg.nginxConf}
	default:
		logDir := "/var/log/" + cfg.layout.UnitPrefix
		if err := os.MkdirAll(logDir, 0o750); err != nil {
			return nil, nil, err
		}
		s := &nginx.Supervised{
			Main:    filepath.Join(cfg.layout.ConfigRoot, "nginx", "nginx.conf"),
			PIDFile: filepath.Join(cfg.layout.RuntimeRoot, "nginx.pid"),
			Log:     log,
		}
		runner = s
		closeRunner = s.Close
	}
	m, err := nginx.New(nginx.Options{Layout: cfg.layout, Listen: ln, Runner: runner, Log: log,
		AccessLogDir: filepath.Join("/var/log", cfg.layout.UnitPrefix+"-sites")})
	if err != nil {
		return nil, nil, err
	}
	switch mode {
	case "systemd":
		if err := installInclude(cfg.nginxInclude, m, ln, log); err != nil {
			return nil, nil, err
		}
	default:
		if err := os.MkdirAll(cfg.layout.RuntimeRoot, 0o755); err != nil {
			return nil, nil, err
		}
		main := nginx.RenderMain(nginx.MainOptions{HTTPConf: m.LiveHTTPConf(), WebUser: cfg.layout.WebUser,
			PIDFile: filepath.Join(cfg.layout.RuntimeRoot, "nginx.pid"), ErrorLog: "/var/log/" + cfg.layout.UnitPrefix + "/nginx-error.log"})
		if _, err := procmgr.WriteFileAtomic(filepath.Join(cfg.layout.ConfigRoot, "nginx", "nginx.conf"), main, 0, 0, 0o600); err != nil {
			return nil, nil, err
		}
	}
	if err := m.Start(ctx); err != nil {
		closeRunner()
		return nil, nil, fmt.Errorf("the web server for the sites: %w (or run with --http-listen none)", err)
	}
	up, detail := m.Up(ctx)
	log.Info("web server for the sites", "up", up, "detail", detail)
	rotCtx, stopRotating := context.WithCancel(context.Background())
	go rotateAccessLogs(rotCtx, m, log)
	return m, func() { stopRotating(); closeRunner() }, nil
}

// The sites' access log is rotated past accessLogMax (the one before is
// kept, as access.log.1), checked every accessLogCheck.
const (
	accessLogMax   = 64 << 20
	accessLogCheck = time.Minute
)

// rotateAccessLogs rotates the sites' access logs until ctx ends.
func rotateAccessLogs(ctx context.Context, m *nginx.Manager, log *slog.Logger) {
	t := time.NewTicker(accessLogCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rotated, err := m.RotateLogs(ctx, accessLogMax)
		if rotated {
			log.Info("access log rotated", "action", "rotate-log", "file", m.AccessLogPath())
		}
		if err != nil {
			log.Error("rotating the access logs", "action", "rotate-log", "err", err)
		}
	}
}

// debianDefaultSite is the site Debian's nginx package enables: a default
// server on port 80 that would clash with the panel's.
const debianDefaultSite = "/etc/nginx/sites-enabled/default"

// installInclude writes the file the nginx unit's config includes, and
// disables Debian's stock default site when the panel's sites take its port
// (only the stock link: a site the admin made is left, and nginx -t names
// the clash).
func installInclude(path string, m *nginx.Manager, ln nginx.Listen, log *slog.Logger) error {
	if _, err := procmgr.WriteFileAtomic(path, []byte("# Ikabud Panel's sites. Written by the panel.\n"+m.IncludeLine()), 0, 0, 0o644); err != nil {
		return err
	}
	if ln.Port != 80 {
		return nil
	}
	if target, err := os.Readlink(debianDefaultSite); err == nil && target == "/etc/nginx/sites-available/default" {
		if err := os.Remove(debianDefaultSite); err != nil {
			return err
		}
		log.Warn("disabled Debian's default nginx site: the panel's default server answers unknown hosts on port 80", "link", debianDefaultSite)
	}
	return nil
}

// databaseWarnings are the problems of the host that every tenant could
// exploit, found at start (a database server root account that any local
// user can log in to without a password): logged here, and reported in
// /healthz and panel status.
func databaseWarnings(ctx context.Context, socket string, log *slog.Logger) []string {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []string
	for _, way := range sitedb.OpenAdminLogins(cctx, socket) {
		msg := "every instance's PHP can log in to MariaDB as " + way + " and read every site's database: give root a password or unix_socket authentication only"
		log.Error(msg, "action", "check-database")
		out = append(out, msg)
	}
	return out
}
