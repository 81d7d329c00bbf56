package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	"github.com/ikabud/panel/internal/auth"
)

// cmdMigrate applies the database migrations.
func cmdMigrate(args []string, stdout io.Writer) error {
	fs := newFlagSet("migrate")
	dsn := fs.String("db", envOr("IKABUD_DB", defaultDB), "database DSN (a password only in IKABUD_DB or --db-file)")
	dbFile := fs.String("db-file", envOr("IKABUD_DB_FILE", ""), "read the database DSN from this root-only file")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	resolved, err := dbFromFlags(*dsn, *dbFile, args)
	if err != nil {
		return err
	}
	db, err := openStore(context.Background(), resolved, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stdout, "Database (%s) is up to date\n", db.Dialect())
	return nil
}

// cmdUser manages panel users directly in the database.
func cmdUser(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return fmt.Errorf("%w: panel user add NAME --role admin|support|customer [--uid N]", errUsage)
	}
	fs := newFlagSet("user add")
	dsn := fs.String("db", envOr("IKABUD_DB", defaultDB), "database DSN (a password only in IKABUD_DB or --db-file)")
	dbFile := fs.String("db-file", envOr("IKABUD_DB_FILE", ""), "read the database DSN from this root-only file")
	// No default: a user made without thinking about it must not be an admin.
	role := fs.String("role", "", "admin, support or customer (required)")
	uidFlag := fs.String("uid", "", "local Unix uid that acts as this user over the panel socket")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: panel user add takes one user name", errUsage)
	}
	if *role == "" {
		return fmt.Errorf("%w: panel user add needs --role admin, support or customer", errUsage)
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return err
	}
	var uid *int
	if *uidFlag != "" {
		n, err := strconv.Atoi(*uidFlag)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: --uid must be a non-negative number", errUsage)
		}
		uid = &n
	}
	resolved, err := dbFromFlags(*dsn, *dbFile, args[1:])
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := openStore(ctx, resolved, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	password, err := auth.GeneratePassword()
	if err != nil {
		return err
	}
	u, err := auth.NewService(db, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))).AddUser(ctx, pos[0], r, password, uid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Added %s user %s (id %d)\n", u.Role, u.Name, u.ID)
	fmt.Fprintf(stdout, "Password (shown once): %s\n", password)
	return nil
}
