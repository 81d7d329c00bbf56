// Package storetest gives tests real, migrated panel databases: an SQLite file in the test's
// temporary directory, and a database of its own on a real MariaDB/MySQL server. Tests of the
// store and of the packages above it run on both.
//
// MariaDB is found through IKABUD_TEST_MYSQL_DSN (default DefaultMySQLDSN); its user must be
// allowed to create and drop databases. When it cannot be reached the test fails, saying so: it
// never skips.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/ikabud/panel/internal/store"
)

// EnvMySQLDSN names the environment variable with the MariaDB server for tests, in the store's
// mysql:// form; any database name in it is ignored.
const EnvMySQLDSN = "IKABUD_TEST_MYSQL_DSN"

// DefaultMySQLDSN is used when EnvMySQLDSN is unset.
const DefaultMySQLDSN = "mysql://root@tcp(127.0.0.1:3306)/"

// Dialects returns the dialects every store test runs on.
func Dialects() []string { return []string{store.DialectSQLite, store.DialectMySQL} }

// ForEachDialect runs fn as one subtest per dialect, named after it.
func ForEachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	t.Helper()
	for _, d := range Dialects() {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// Run runs fn as one subtest per dialect, each with a fresh migrated database using the real
// clock.
func Run(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	ForEachDialect(t, func(t *testing.T, dialect string) {
		fn(t, Open(t, dialect, store.Options{}))
	})
}

// Open returns a fresh, migrated database of the dialect. It is closed, and a MariaDB database
// dropped, when the test ends.
func Open(t testing.TB, dialect string, opts store.Options) *store.DB {
	t.Helper()
	db := OpenUnmigrated(t, DSN(t, dialect), opts)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	return db
}

// OpenUnmigrated opens dsn without migrating, and closes it when the test ends.
func OpenUnmigrated(t testing.TB, dsn string, opts store.Options) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.OpenWith(ctx, dsn, Logger(t), opts)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close database: %v", err)
		}
	})
	return db
}

// DSN returns the dsn of a new, empty database of the dialect: an SQLite file in t.TempDir(), or
// a MariaDB database created for this test and dropped when it ends.
func DSN(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case store.DialectSQLite:
		return "sqlite://" + filepath.Join(t.TempDir(), "panel.db")
	case store.DialectMySQL:
		return MariaDBDSN(t)
	default:
		t.Fatalf("storetest: unknown dialect %q", dialect)
		return ""
	}
}

// MariaDBDSN creates a database named ikabud_test_<random hex> on the test server and returns a
// mysql:// dsn for it. The database is dropped when the test ends.
func MariaDBDSN(t testing.TB) string {
	t.Helper()
	raw := os.Getenv(EnvMySQLDSN)
	if raw == "" {
		raw = DefaultMySQLDSN
	}
	if !strings.HasPrefix(raw, "mysql://") {
		t.Fatalf("%s must start with mysql:// (like %s)", EnvMySQLDSN, DefaultMySQLDSN)
	}
	cfg, err := mysqldriver.ParseDSN(strings.TrimPrefix(raw, "mysql://"))
	if err != nil {
		t.Fatalf("parse %s: %v", EnvMySQLDSN, err)
	}
	where := fmt.Sprintf("%s(%s)", cfg.Net, cfg.Addr)

	boot := cfg.Clone()
	boot.DBName = ""
	boot.Timeout = 5 * time.Second
	connector, err := mysqldriver.NewConnector(boot)
	if err != nil {
		t.Fatalf("MariaDB dsn from %s: %v", EnvMySQLDSN, err)
	}
	admin := sql.OpenDB(connector)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		t.Fatalf("MariaDB not reachable at %s: start it or set %s: %v", where, EnvMySQLDSN, err)
	}

	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "ikabud_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		_ = admin.Close()
		t.Fatalf("create test database on MariaDB at %s: %v", where, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
		_ = admin.Close()
	})

	cfg.DBName = name
	return "mysql://" + cfg.FormatDSN()
}

// Logger returns a logger that writes to the test's output (shown for failing tests and with -v).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Clock is a settable clock for store.Options.Now. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that reads start until set or advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
