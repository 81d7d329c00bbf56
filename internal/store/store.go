// Package store opens the panel's database (SQLite by default, MySQL/MariaDB in production),
// applies the embedded goose migrations and offers typed queries over GORM.
//
// GORM is used for queries only; the schema comes from the SQL files in migrations/, never from
// AutoMigrate. Every time the store writes is in UTC, truncated to microseconds (the precision of
// DATETIME(6)), so that both dialects hold and return the same instant.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	mysqldriver "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
)

// Sentinel errors that callers branch on. Errors returned by this package wrap them with %w.
var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a row with the same primary key or unique value already exists.
	ErrConflict = errors.New("store: conflict")
	// ErrInvalid: the row refers to a row that does not exist (a foreign key), such as an
	// instance whose owner id names no user.
	ErrInvalid = errors.New("store: invalid reference")
)

// Dialect names, as returned by [DB.Dialect].
const (
	DialectSQLite = "sqlite"
	DialectMySQL  = "mysql"
)

// Pool settings. SQLite allows one writer at a time; one connection avoids SQLITE_BUSY between
// our own goroutines and is plenty for a panel. For MySQL the lifetime stays well below the
// usual wait_timeout (8 h by default, often lowered to minutes by hosting providers), so the
// server never closes a connection the pool still thinks is alive.
const (
	sqliteBusyTimeout   = 5 * time.Second
	mysqlMaxOpenConns   = 16
	mysqlMaxIdleConns   = 4
	mysqlConnMaxLife    = 3 * time.Minute
	mysqlConnMaxIdle    = time.Minute
	mysqlDialTimeout    = 10 * time.Second
	slowQueryThreshold  = 500 * time.Millisecond
	acceptedDSNFormsMsg = `accepted forms: "sqlite:///abs/path/panel.db", "sqlite:relative/panel.db", ` +
		`a bare path ending in ".db", or "mysql://user:pass@tcp(host:3306)/dbname?opts"`
)

// Options tunes [OpenWith]. The zero value is what production uses.
type Options struct {
	// Now is the clock used for created_at, updated_at and audit times. Nil means time.Now.
	// Tests inject a fixed or stepping clock here.
	Now func() time.Time
}

// DB is an open panel database. It is safe for concurrent use.
type DB struct {
	gorm    *gorm.DB
	sql     *sql.DB
	dialect string
	clock   func() time.Time
	log     *slog.Logger
}

// Open parses dsn and opens the database with default [Options]. See [OpenWith].
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	return OpenWith(ctx, dsn, log, Options{})
}

// OpenWith parses dsn and opens the database. It does not migrate; call [DB.Migrate].
//
// Accepted dsn forms:
//
//   - "sqlite:///abs/path/panel.db", "sqlite:relative/panel.db", or a bare path ending in ".db":
//     SQLite. The parent directory is created with mode 0700 and a new database file with mode
//     0600 (it holds password hashes). Connections use WAL, busy_timeout 5000, foreign_keys ON
//     and BEGIN IMMEDIATE, over a single pooled connection.
//   - "mysql://user:pass@tcp(host:3306)/dbname?opts": MySQL or MariaDB, with the go-sql-driver
//     DSN after the scheme. parseTime=true, loc=UTC, charset utf8mb4, multiStatements=false and
//     clientFoundRows=true are forced whatever opts say; sql_mode defaults to TRADITIONAL (strict)
//     unless opts set one.
//
// Any other form is an error that lists the accepted forms. Errors never repeat the dsn, which
// may hold a password.
func OpenWith(ctx context.Context, dsn string, log *slog.Logger, opts Options) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}
	target, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db := &DB{dialect: target.dialect, clock: clock, log: log}

	var dialector gorm.Dialector
	switch target.dialect {
	case DialectSQLite:
		if db.sql, err = openSQLite(target.sqlitePath); err != nil {
			return nil, err
		}
		dialector = sqlite.Dialector{Conn: db.sql}
	case DialectMySQL:
		if db.sql, err = openMySQL(target.mysql); err != nil {
			return nil, err
		}
		dialector = mysql.New(mysql.Config{Conn: db.sql})
	}

	if err := db.sql.PingContext(ctx); err != nil {
		_ = db.sql.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", target.describe(), err)
	}
	if target.dialect == DialectSQLite {
		var mode string
		if err := db.sql.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			_ = db.sql.Close()
			return nil, fmt.Errorf("store: read journal mode of %s: %w", target.describe(), err)
		}
		if !strings.EqualFold(mode, "wal") {
			// The file system refused WAL (some network file systems do). Everything still
			// works, but other processes cannot read while this one writes.
			log.WarnContext(ctx, "sqlite database is not in WAL mode", "path", target.sqlitePath, "journal_mode", mode)
		}
	}

	db.gorm, err = gorm.Open(dialector, &gorm.Config{
		NowFunc:                db.now,
		TranslateError:         true,
		SkipDefaultTransaction: true, // each call here is one statement; no implicit BEGIN needed
		Logger:                 gormLogger{log: log, slow: slowQueryThreshold},
	})
	if err != nil {
		_ = db.sql.Close()
		return nil, fmt.Errorf("store: open %s: %w", target.describe(), err)
	}
	log.Debug("database opened", "dialect", db.dialect, "database", target.describe())
	return db, nil
}

// Dialect returns "sqlite" or "mysql".
func (db *DB) Dialect() string { return db.dialect }

// Gorm returns the underlying GORM handle, for queries this package does not offer yet. Writes
// through it bypass the UTC normalisation that this package's methods do.
func (db *DB) Gorm() *gorm.DB { return db.gorm }

// Close closes every connection of the pool.
func (db *DB) Close() error {
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// now is the store's clock: UTC, truncated to what DATETIME(6) keeps. MySQL would round a finer
// value and SQLite would keep it, so without the truncation the dialects would disagree.
func (db *DB) now() time.Time { return normTime(db.clock()) }

// normTime brings a time to the stored form; the zero time stays zero so that GORM still sees
// "unset" and fills created_at itself.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// dsnTarget is a parsed dsn.
type dsnTarget struct {
	dialect    string
	sqlitePath string              // absolute
	mysql      *mysqldriver.Config // with the forced settings applied
}

// describe names the database for errors and logs, without credentials.
func (t dsnTarget) describe() string {
	if t.dialect == DialectSQLite {
		return "sqlite database " + t.sqlitePath
	}
	return fmt.Sprintf("mysql database %q at %s(%s)", t.mysql.DBName, t.mysql.Net, t.mysql.Addr)
}

func parseDSN(dsn string) (dsnTarget, error) {
	switch {
	case strings.HasPrefix(dsn, "mysql://"):
		cfg, err := mysqlConfig(strings.TrimPrefix(dsn, "mysql://"))
		if err != nil {
			return dsnTarget{}, err
		}
		return dsnTarget{dialect: DialectMySQL, mysql: cfg}, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		path := strings.TrimPrefix(dsn, "sqlite://")
		if !filepath.IsAbs(path) {
			return dsnTarget{}, fmt.Errorf("store: a dsn starting with sqlite:// needs an absolute path "+
				"after it (sqlite:///var/lib/ikabud/panel.db); for a relative path write sqlite:%s; %s",
				path, acceptedDSNFormsMsg)
		}
		return sqliteTarget(path)
	case strings.HasPrefix(dsn, "sqlite:"):
		return sqliteTarget(strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasSuffix(dsn, ".db") && !strings.Contains(dsn, "://"):
		return sqliteTarget(dsn)
	case dsn == "":
		return dsnTarget{}, fmt.Errorf("store: empty database dsn; %s", acceptedDSNFormsMsg)
	default:
		scheme := "no scheme"
		if i := strings.Index(dsn, "://"); i > 0 {
			scheme = fmt.Sprintf("scheme %q", dsn[:i])
		}
		return dsnTarget{}, fmt.Errorf("store: unsupported database dsn (%s); %s", scheme, acceptedDSNFormsMsg)
	}
}

func sqliteTarget(path string) (dsnTarget, error) {
	switch {
	case path == "":
		return dsnTarget{}, fmt.Errorf("store: sqlite dsn names no file; %s", acceptedDSNFormsMsg)
	case strings.ContainsAny(path, "?\x00"):
		// The driver would read everything after '?' as its own options.
		return dsnTarget{}, fmt.Errorf("store: sqlite path %q contains '?' or NUL, which the driver cannot take", path)
	case strings.HasPrefix(path, "file:"):
		return dsnTarget{}, fmt.Errorf("store: sqlite path %q starts with file:, which the driver would read as a URI", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return dsnTarget{}, fmt.Errorf("store: sqlite path %q: %w", path, err)
	}
	return dsnTarget{dialect: DialectSQLite, sqlitePath: abs}, nil
}

// mysqlConfig parses the go-sql-driver part of a mysql:// dsn and forces the settings the store
// relies on.
func mysqlConfig(driverDSN string) (*mysqldriver.Config, error) {
	cfg, err := mysqldriver.ParseDSN(driverDSN)
	if err != nil {
		// The driver's messages describe the syntax problem, not the dsn itself.
		return nil, fmt.Errorf("store: mysql dsn: %w; %s", err, acceptedDSNFormsMsg)
	}
	if cfg.DBName == "" {
		return nil, errors.New("store: mysql dsn names no database (mysql://user:pass@tcp(host:3306)/ikabud)")
	}
	cfg.ParseTime = true // DATETIME columns scan into time.Time
	cfg.Loc = time.UTC   // and are read and written as UTC
	cfg.MultiStatements = false
	cfg.ClientFoundRows = true // RowsAffected counts matched rows: an UPDATE that changes nothing is not "not found"
	cfg.InterpolateParams = false
	if err := cfg.Apply(mysqldriver.Charset("utf8mb4", "")); err != nil {
		return nil, fmt.Errorf("store: mysql dsn: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = mysqlDialTimeout
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		// Strict mode: a value that does not fit is an error, never silently truncated.
		cfg.Params["sql_mode"] = "'TRADITIONAL'"
	}
	return cfg, nil
}

func openSQLite(path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory for sqlite database: %w", err)
	}
	// Create the file ourselves so that it starts private; SQLite gives its -wal and -shm files
	// the same mode as the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: create sqlite database: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: create sqlite database: %w", err)
	}
	// The driver runs each _pragma on every new connection. _txlock=immediate takes the write
	// lock at BEGIN, so a transaction never fails half-way with SQLITE_BUSY when another process
	// writes (busy_timeout covers the wait at BEGIN instead).
	// synchronous=NORMAL: in WAL mode a commit is not fsynced; a crash or kill
	// of the panel loses nothing (the WAL is in the page cache), only an OS
	// crash or power cut may lose the last commits, and the database stays
	// consistent. The reconciler then sees the instance as the host has it.
	// Each fsync costs ~9 ms on these machines, three per create.
	dsn := path + fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate",
		sqliteBusyTimeout.Milliseconds())
	sqlDB, err := sql.Open(sqlite.DriverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite database %s: %w", path, err)
	}
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetMaxIdleConns(1)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	return sqlDB, nil
}

func openMySQL(cfg *mysqldriver.Config) (*sql.DB, error) {
	connector, err := mysqldriver.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: mysql dsn: %w", err)
	}
	sqlDB := sql.OpenDB(connector)
	sqlDB.SetMaxOpenConns(mysqlMaxOpenConns)
	sqlDB.SetMaxIdleConns(mysqlMaxIdleConns)
	sqlDB.SetConnMaxLifetime(mysqlConnMaxLife)
	sqlDB.SetConnMaxIdleTime(mysqlConnMaxIdle)
	return sqlDB, nil
}

// translate maps GORM's translated errors to the store's sentinels, adding what for the
// message. Other errors are wrapped as they are.
func translate(err error, op string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return fmt.Errorf("%w: %s: already exists", ErrConflict, op)
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return fmt.Errorf("%w: %s: refers to a row that does not exist", ErrInvalid, op)
	default:
		return fmt.Errorf("store: %s: %w", op, err)
	}
}
