// Package systemd is the production Backend: one template unit, one service
// instance per site, driven over D-Bus with go-systemd, and state pushed by
// systemd's PropertiesChanged signals.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

// conn keeps one D-Bus connection to systemd and makes a new one when it was
// closed (systemd restarted, daemon-reexec). Callers get the current
// connection; a signal subscription is set up again on every new connection.
type conn struct {
	mu       sync.Mutex
	c        *sd.Conn
	onNew    func(*sd.Conn) error // subscribes to signals on a fresh connection
	dialFunc func(context.Context) (*sd.Conn, error)
}

func (c *conn) get(ctx context.Context) (*sd.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil && c.c.Connected() {
		return c.c, nil
	}
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
	nc, err := c.dialFunc(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd: connect to systemd over D-Bus: %w", err)
	}
	if c.onNew != nil {
		if err := c.onNew(nc); err != nil {
			nc.Close()
			return nil, fmt.Errorf("systemd: subscribe to signals: %w", err)
		}
	}
	c.c = nc
	return nc, nil
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// dial connects straight to systemd's private socket when root (no
// dbus-daemon needed), and falls back to the system bus.
func dial(ctx context.Context) (*sd.Conn, error) {
	c, err := sd.NewSystemdConnectionContext(ctx)
	if err == nil {
		return c, nil
	}
	c2, err2 := sd.NewSystemConnectionContext(ctx)
	if err2 != nil {
		return nil, errors.Join(err, err2)
	}
	return c2, nil
}

// waitJob waits for a job's result on ch (capacity 1, so go-systemd never
// blocks delivering it). Anything but "done" is an error naming the unit and
// the result.
func waitJob(ctx context.Context, unit, verb string, ch <-chan string) error {
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("systemd: %s %s: job %s", verb, unit, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd: %s %s: %w", verb, unit, ctx.Err())
	case <-t.C:
		return fmt.Errorf("systemd: %s %s: no job result after 60s", verb, unit)
	}
}
