package nginx

import (
	"context"
	"fmt"
)

// UnitController is what UnitRunner needs of systemd (the systemd
// backend's Units).
type UnitController interface {
	StartUnit(ctx context.Context, name string) error
	// ReloadUnit reloads a running unit, or starts it.
	ReloadUnit(ctx context.Context, name string) error
	UnitState(ctx context.Context, name string) (active, sub string, err error)
}

// UnitRunner runs nginx as a systemd unit the distribution ships
// (Debian's nginx.service), whose main config includes the panel's
// http.conf (Setup writes the include).
type UnitRunner struct {
	Units UnitController
	Unit  string // nginx.service
	Main  string // /etc/nginx/nginx.conf
}

// Kind names the runner.
func (u UnitRunner) Kind() string { return "systemd " + u.Unit }

// MainConfig is the unit's nginx.conf.
func (u UnitRunner) MainConfig() string { return u.Main }

// Ensure starts the unit if it does not run.
func (u UnitRunner) Ensure(ctx context.Context) error {
	if active, _, err := u.Units.UnitState(ctx, u.Unit); err == nil && active == "active" {
		return nil
	}
	if err := u.Units.StartUnit(ctx, u.Unit); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	return nil
}

// Reload reloads the unit (ExecReload: a SIGHUP to the master).
func (u UnitRunner) Reload(ctx context.Context) error {
	if err := u.Units.ReloadUnit(ctx, u.Unit); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	return nil
}

// Up says whether the unit is active.
func (u UnitRunner) Up(ctx context.Context) (bool, string) {
	active, sub, err := u.Units.UnitState(ctx, u.Unit)
	if err != nil {
		return false, err.Error()
	}
	return active == "active", fmt.Sprintf("%s (%s)", active, sub)
}
