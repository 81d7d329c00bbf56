package procmgr

import (
	"fmt"
	"path/filepath"
	"regexp"
)

// Layout says where instances live on this host. Every path an instance uses
// is derived here from a validated InstanceID, so no path is ever built from
// raw input.
type Layout struct {
	// InstancesRoot holds one directory per instance (its files: public/, tmp/, sessions/).
	InstancesRoot string
	// ConfigRoot holds the panel's configuration; per-instance php-fpm
	// configs live under ConfigRoot/instances/<id>/.
	ConfigRoot string
	// RuntimeRoot holds per-instance runtime directories with the sockets.
	RuntimeRoot string
	// UnitDir is where the template unit is written.
	UnitDir string
	// WebUser is the web server's user, added to each instance's group so it
	// can reach the socket and static files. Empty: none.
	WebUser string
	// UnitPrefix names the template unit (<prefix>@.service). Tests use their
	// own so that they never touch a real panel's units.
	UnitPrefix string
}

// DefaultLayout is the layout of a production host.
func DefaultLayout() Layout {
	return Layout{
		InstancesRoot: "/srv/ikabud/instances",
		ConfigRoot:    "/etc/ikabud",
		RuntimeRoot:   "/run/ikabud",
		UnitDir:       "/etc/systemd/system",
		WebUser:       "www-data",
		UnitPrefix:    "ikabud",
	}
}

var safePathRe = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)+$`)

// Validate checks that the layout's paths are absolute, clean and made of
// plain characters, since they are written into unit files and configs.
func (l Layout) Validate() error {
	for _, f := range []struct{ name, path string }{
		{"instances-root", l.InstancesRoot}, {"config-root", l.ConfigRoot},
		{"runtime-root", l.RuntimeRoot}, {"unit-dir", l.UnitDir},
	} {
		if !safePathRe.MatchString(f.path) || filepath.Clean(f.path) != f.path {
			return invalid(f.name, f.path, "must be a clean absolute path of letters, digits, '.', '_' and '-'")
		}
	}
	if l.WebUser != "" && !regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`).MatchString(l.WebUser) {
		return invalid("web-user", l.WebUser, "must be a valid Unix user name")
	}
	if !regexp.MustCompile(`^[a-z][a-z0-9-]{0,15}$`).MatchString(l.UnitPrefix) {
		return invalid("unit-prefix", l.UnitPrefix, "must be 1-16 lowercase letters, digits or hyphens")
	}
	// The runtime directory is made by systemd's RuntimeDirectory=, which
	// is always relative to /run.
	if filepath.Dir(l.RuntimeRoot) != "/run" {
		return invalid("runtime-root", l.RuntimeRoot, "must be a directory directly under /run")
	}
	return nil
}

// InstanceDir is the instance's root directory.
func (l Layout) InstanceDir(id InstanceID) string { return filepath.Join(l.InstancesRoot, string(id)) }

// PublicDir is the document root.
func (l Layout) PublicDir(id InstanceID) string { return filepath.Join(l.InstanceDir(id), "public") }

// TmpDir is PHP's temporary and upload directory.
func (l Layout) TmpDir(id InstanceID) string { return filepath.Join(l.InstanceDir(id), "tmp") }

// SessionsDir is PHP's session directory.
func (l Layout) SessionsDir(id InstanceID) string {
	return filepath.Join(l.InstanceDir(id), "sessions")
}

// ConfigDir holds the instance's php-fpm config and its php-fpm link.
func (l Layout) ConfigDir(id InstanceID) string {
	return filepath.Join(l.ConfigRoot, "instances", string(id))
}

// FPMConfigPath is the instance's whole php-fpm master config.
func (l Layout) FPMConfigPath(id InstanceID) string {
	return filepath.Join(l.ConfigDir(id), "php-fpm.conf")
}

// FPMBinaryLink points at the php-fpm binary of the instance's PHP version, so
// that one template unit serves every version.
func (l Layout) FPMBinaryLink(id InstanceID) string {
	return filepath.Join(l.ConfigDir(id), "php-fpm")
}

// RuntimeDir holds the socket and pid file; the backend creates it at start
// and removes it at stop (under systemd, RuntimeDirectory= does).
func (l Layout) RuntimeDir(id InstanceID) string { return filepath.Join(l.RuntimeRoot, string(id)) }

// SocketPath is the FastCGI socket of the pool.
func (l Layout) SocketPath(id InstanceID) string {
	return filepath.Join(l.RuntimeDir(id), "php-fpm.sock")
}

// PIDPath is the master's pid file.
func (l Layout) PIDPath(id InstanceID) string { return filepath.Join(l.RuntimeDir(id), "php-fpm.pid") }

// UnitTemplateName is the systemd template unit shared by all instances.
func (l Layout) UnitTemplateName() string { return l.UnitPrefix + "@.service" }

// UnitName is the systemd unit of an instance.
func (l Layout) UnitName(id InstanceID) string { return l.UnitPrefix + "@" + string(id) + ".service" }

// InstanceFromUnit returns the instance id of one of this layout's units.
func (l Layout) InstanceFromUnit(unit string) (InstanceID, bool) {
	pre, suf := l.UnitPrefix+"@", ".service"
	if len(unit) <= len(pre)+len(suf) || unit[:len(pre)] != pre || unit[len(unit)-len(suf):] != suf {
		return "", false
	}
	id, err := ParseInstanceID(unit[len(pre) : len(unit)-len(suf)])
	return id, err == nil
}

func (l Layout) String() string {
	return fmt.Sprintf("instances=%s config=%s runtime=%s", l.InstancesRoot, l.ConfigRoot, l.RuntimeRoot)
}
