package procmgr

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// rollbackTimeout bounds undoing a failed provision (a graceful stop of a
// master that did start takes up to 30 s).
const rollbackTimeout = 70 * time.Second

// Prepared is what Prepare made for one provisioning attempt: the instance's
// user and whether its config changed, and what to remove if the backend's
// own steps (service, start, readiness) then fail.
type Prepared struct {
	User InstanceUser
	// Changed says the config was written anew: a running master needs a
	// reload.
	Changed bool

	host                   *Host
	id                     InstanceID
	log                    *slog.Logger
	newUser, newTree, newC bool
}

// Prepare makes the instance's user and group, directory tree and config as
// spec says: the part of provisioning every backend shares. If it fails
// part-way it removes what it made; if a later step fails, the caller calls
// Undo.
func (h *Host) Prepare(ctx context.Context, spec Spec, log *slog.Logger) (p *Prepared, err error) {
	p = &Prepared{host: h, id: spec.ID, log: log}
	defer func() {
		if err != nil {
			p.Undo(ctx, nil)
		}
	}()
	if p.User, p.newUser, err = h.EnsureUser(ctx, spec.ID); err != nil {
		return p, err
	}
	if p.newUser {
		// A new user over an existing tree: files an earlier instance of
		// this id left (removed without purge). Handing them to a new
		// user, possibly another customer, is not this call's to decide.
		if _, err := os.Lstat(h.Layout.InstanceDir(spec.ID)); err == nil {
			return p, fmt.Errorf("procmgr: %s exists, kept from a removed instance of this id: purge or move it first: %w", h.Layout.InstanceDir(spec.ID), ErrConflict)
		}
	}
	if p.newTree, err = h.EnsureTree(p.User, spec.ID); err != nil {
		return p, err
	}
	p.newC = !h.ConfigExists(spec.ID)
	if p.Changed, err = h.WriteConfig(p.User, spec); err != nil {
		return p, err
	}
	return p, nil
}

// Undo removes, in reverse order, what Prepare made; teardown (the backend's
// own service state, may be nil) runs first when the config was new, so an
// instance that existed before is never taken down. It runs detached from
// ctx's cancellation: a rollback must finish.
func (p *Prepared) Undo(ctx context.Context, teardown func(context.Context)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if p.newC {
		if teardown != nil {
			teardown(ctx)
		}
		if err := p.host.RemoveConfig(p.id); err != nil {
			p.log.Error("rollback: remove config", "instance", string(p.id), "err", err)
		}
	}
	if p.newTree {
		if err := p.host.RemoveTree(p.id); err != nil {
			p.log.Error("rollback: remove tree", "instance", string(p.id), "err", err)
		}
	}
	if p.newUser {
		if err := p.host.RemoveUser(ctx, p.id); err != nil {
			p.log.Error("rollback: remove user", "instance", string(p.id), "err", err)
		}
	}
}
