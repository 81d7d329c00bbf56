package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/ikabud/panel/migrations"
)

// mysqlMigrateLockTimeout bounds how long Migrate waits for another process's migration on the
// same MySQL server (GET_LOCK takes whole seconds).
const mysqlMigrateLockTimeout = 120

// Migrate applies every embedded migration that the database lacks. It is idempotent: on an
// up-to-date database it changes nothing and returns nil.
//
// On MySQL a named server lock serialises concurrent Migrate calls (MySQL DDL is not
// transactional, so two runs must not interleave). On SQLite each migration runs in its own
// transaction, so a losing concurrent run fails and rolls back cleanly; running it again
// succeeds.
func (db *DB) Migrate(ctx context.Context) error {
	fsys, err := migrations.Dialect(db.dialect)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(db.log),
	}
	gooseDialect := goose.DialectSQLite3
	if db.dialect == DialectMySQL {
		gooseDialect = goose.DialectMySQL
		// The whole run, the creation of goose's version table included,
		// happens under one server lock held on a connection of its own:
		// goose's own session locker left a window in which a second
		// panel saw the version table before its first row ("missing zero
		// version migration").
		conn, err := db.sql.Conn(ctx)
		if err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		defer conn.Close()
		if err := (mysqlLocker{}).SessionLock(ctx, conn); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		defer (mysqlLocker{}).SessionUnlock(context.WithoutCancel(ctx), conn)
	}
	provider, err := goose.NewProvider(gooseDialect, db.sql, fsys, opts...)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	// No provider.Close: it would close the pool that the store shares with it.
	results, err := provider.Up(ctx)
	for _, r := range results {
		if r.Error == nil {
			db.log.InfoContext(ctx, "applied database migration",
				"dialect", db.dialect, "migration", r.Source.Path, "duration", r.Duration)
		}
	}
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", db.dialect, err)
	}
	return nil
}

// mysqlLocker takes a named server lock with GET_LOCK. The lock belongs to the connection,
// so the server frees it if the process dies. Its name includes the database, so panels on
// different databases of one server do not wait for each other.
type mysqlLocker struct{}

var _ lock.SessionLocker = mysqlLocker{}

// The lock name is at most 64 characters: a short prefix and up to 50 characters of the
// database name.
const mysqlLockName = "CONCAT('ikabud_migrate:', LEFT(DATABASE(), 50))"

func (mysqlLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var got sql.NullInt64
	err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+mysqlLockName+", ?)", mysqlMigrateLockTimeout).Scan(&got)
	switch {
	case err != nil:
		return fmt.Errorf("take migration lock: %w", err)
	case !got.Valid:
		return errors.New("take migration lock: GET_LOCK returned NULL")
	case got.Int64 != 1:
		return fmt.Errorf("take migration lock: another migration still held it after %d s", mysqlMigrateLockTimeout)
	}
	return nil
}

func (mysqlLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK("+mysqlLockName+")").Scan(&released); err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	if !released.Valid || released.Int64 != 1 {
		return errors.New("release migration lock: this connection did not hold it")
	}
	return nil
}
