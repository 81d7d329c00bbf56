// Package sitedb gives instances their own MariaDB database and user:
// privileges on that database only, a generated password, and the whole of
// it dropped with the instance. The panel reaches the server as an account
// that may create databases and users (Debian's root, through the Unix
// socket, by default). Names are derived from validated instance ids, so
// no statement carries raw input.
package sitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/randtext"
)

// DefaultSocket is Debian's MariaDB socket, which instances connect over.
const DefaultSocket = "/run/mysqld/mysqld.sock"

// DefaultAdminDSN reaches the server as root through its socket: Debian's
// root account authenticates by the socket peer's uid, and the panel runs
// as root.
const DefaultAdminDSN = "root@unix(" + DefaultSocket + ")/"

// Credentials are what an instance's code connects with.
type Credentials struct {
	Database string
	User     string
	Password string
	// Socket is the server's Unix socket; instances connect over it.
	Socket string
}

// Admin creates and drops instances' databases.
type Admin struct {
	db     *sql.DB
	socket string
}

// Open prepares the connection with dsn (a go-sql-driver DSN, "mysql://"
// optional). It connects on first use: a server that is down fails the
// create that needs it, not the panel's start.
func Open(dsn string) (*Admin, error) {
	dsn = strings.TrimPrefix(dsn, "mysql://")
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sitedb: --db-admin: %w", err)
	}
	cfg.Timeout = 5 * time.Second
	socket := DefaultSocket
	if cfg.Net == "unix" {
		socket = cfg.Addr
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("sitedb: %w", err)
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxLifetime(5 * time.Minute)
	return &Admin{db: db, socket: socket}, nil
}

// Socket is the server's Unix socket, as instances reach it.
func (a *Admin) Socket() string { return a.socket }

// Close closes the connection.
func (a *Admin) Close() error { return a.db.Close() }

// Names is the database and the user of an instance: "ikabud_" and the id
// with its hyphens as underscores (ids have no underscores, so two ids
// never share a name); at most 32 characters.
func Names(id procmgr.InstanceID) (database, user string) {
	n := "ikabud_" + strings.ReplaceAll(string(id), "-", "_")
	return n, n
}

// Create makes the instance's database and user with a new password, and
// grants the user every privilege on that database alone. A database or
// user of that name already there (a create interrupted earlier) is taken
// over: the user gets the new password.
func (a *Admin) Create(ctx context.Context, id procmgr.InstanceID) (Credentials, error) {
	dbName, user := Names(id)
	// Letters and digits only: the statements below carry it in a literal.
	pw, err := randtext.From(randtext.Alnum, 32)
	if err != nil {
		return Credentials{}, fmt.Errorf("sitedb: %w", err)
	}
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS `" + dbName + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
		"CREATE USER IF NOT EXISTS '" + user + "'@'localhost' IDENTIFIED BY '" + pw + "'",
		"ALTER USER '" + user + "'@'localhost' IDENTIFIED BY '" + pw + "'",
		"GRANT ALL PRIVILEGES ON `" + dbName + "`.* TO '" + user + "'@'localhost'",
	}
	for _, s := range stmts {
		if _, err := a.db.ExecContext(ctx, s); err != nil {
			// The statement holds the password: name it by its verb.
			return Credentials{}, fmt.Errorf("sitedb: %s for %s: %w", strings.Join(strings.Fields(s)[:2], " "), id, err)
		}
	}
	return Credentials{Database: dbName, User: user, Password: pw, Socket: a.socket}, nil
}

// Drop removes the instance's database and user. Missing ones are not an
// error.
func (a *Admin) Drop(ctx context.Context, id procmgr.InstanceID) error {
	dbName, user := Names(id)
	var errs []error
	for _, s := range []string{"DROP DATABASE IF EXISTS `" + dbName + "`", "DROP USER IF EXISTS '" + user + "'@'localhost'"} {
		if _, err := a.db.ExecContext(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("sitedb: %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// OpenAdminLogins lists the ways any local user (an instance's PHP
// included) could log in to the server with every privilege, without
// knowing a password: root with an empty password over TCP at 127.0.0.1,
// or over the socket as an unprivileged user (an "unix_socket OR
// mysql_native_password ”" root). Each entry names the way.
func OpenAdminLogins(ctx context.Context, socket string) []string {
	var open []string
	// Over TCP: the panel's own process can try, since no socket
	// credential is involved.
	if db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/?timeout=2s"); err == nil {
		if err := db.PingContext(ctx); err == nil {
			open = append(open, "root with an empty password over TCP at 127.0.0.1:3306")
		}
		db.Close()
	}
	// Over the socket as nobody: a separate process, since the socket
	// peer's uid is the point.
	if _, err := os.Stat("/usr/bin/mariadb"); err == nil {
		cmd := exec.CommandContext(ctx, "/usr/bin/mariadb", "--no-defaults", "--protocol=socket", "-S", socket, "-uroot", "--connect-timeout=2", "-e", "SELECT 1")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if err := cmd.Run(); err == nil {
			open = append(open, "root with an empty password over "+socket+" from any local user")
		}
	}
	return open
}
