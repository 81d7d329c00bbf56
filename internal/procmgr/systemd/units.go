package systemd

import (
	"context"
	"fmt"
)

// Units are the powers over other units (nginx.service) that the panel
// needs beside its instances: start, reload, and read the state, each job
// waited on like the instances'.
type Units struct{ b *Backend }

// Units returns the controller of other units on this backend's connection.
func (b *Backend) Units() Units { return Units{b: b} }

// StartUnit starts a unit and waits for the job; a running unit is not an
// error.
func (u Units) StartUnit(ctx context.Context, name string) error {
	c, err := u.b.conn.get(ctx)
	if err != nil {
		return err
	}
	ch := make(chan string, 1)
	if _, err := c.StartUnitContext(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("systemd: start %s: %w", name, err)
	}
	return waitJob(ctx, name, "start", ch)
}

// ReloadUnit reloads a running unit (starts it when it is not) and waits
// for the job.
func (u Units) ReloadUnit(ctx context.Context, name string) error {
	c, err := u.b.conn.get(ctx)
	if err != nil {
		return err
	}
	ch := make(chan string, 1)
	if _, err := c.ReloadOrRestartUnitContext(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("systemd: reload %s: %w", name, err)
	}
	return waitJob(ctx, name, "reload", ch)
}

// UnitState reads a unit's ActiveState and SubState.
func (u Units) UnitState(ctx context.Context, name string) (string, string, error) {
	c, err := u.b.conn.get(ctx)
	if err != nil {
		return "", "", err
	}
	props, err := c.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return "", "", fmt.Errorf("systemd: read %s: %w", name, err)
	}
	active, _ := props["ActiveState"].(string)
	sub, _ := props["SubState"].(string)
	return active, sub, nil
}
