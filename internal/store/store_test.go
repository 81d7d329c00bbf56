package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ikabud/panel/internal/store"
	"github.com/ikabud/panel/internal/store/storetest"
)

// appTables are the tables of migrations/*/00001_init.sql.
var appTables = []string{"api_tokens", "audit_events", "instances", "sessions", "users"}

func TestMigrateIsIdempotent(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db := storetest.OpenUnmigrated(t, storetest.DSN(t, dialect), store.Options{})
		for i := range 3 {
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrate #%d: %v", i+1, err)
			}
		}
		if got := db.Dialect(); got != dialect {
			t.Errorf("Dialect() = %q, want %q", got, dialect)
		}
		var version int64
		if err := db.Gorm().WithContext(ctx).Raw("SELECT MAX(version_id) FROM goose_db_version").Scan(&version).Error; err != nil {
			t.Fatal(err)
		}
		if version != 2 {
			t.Errorf("schema version = %d, want 1", version)
		}
		var applied int64
		if err := db.Gorm().WithContext(ctx).Raw("SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1").Scan(&applied).Error; err != nil {
			t.Fatal(err)
		}
		if applied != 1 {
			t.Errorf("migration 1 recorded %d times, want once", applied)
		}
		if got := tableNames(t, db); !slices.Equal(got, appTables) {
			t.Errorf("tables = %v, want %v", got, appTables)
		}
	})
}

func TestConcurrentMigrateOnMariaDB(t *testing.T) {
	// MySQL DDL is not transactional, so concurrent runs must be serialised by the lock.
	dsn := storetest.MariaDBDSN(t)
	dbs := []*store.DB{
		storetest.OpenUnmigrated(t, dsn, store.Options{}),
		storetest.OpenUnmigrated(t, dsn, store.Options{}),
		storetest.OpenUnmigrated(t, dsn, store.Options{}),
	}
	var wg sync.WaitGroup
	errs := make([]error, len(dbs))
	for i, db := range dbs {
		wg.Go(func() { errs[i] = db.Migrate(context.Background()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate #%d: %v", i, err)
		}
	}
	if got := tableNames(t, dbs[0]); !slices.Equal(got, appTables) {
		t.Errorf("tables = %v, want %v", got, appTables)
	}
}

func TestSQLiteFileAndPragmas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "state")
	path := filepath.Join(dir, "panel.db")
	db := storetest.OpenUnmigrated(t, "sqlite://"+path, store.Options{})
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("parent dir: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	pragmas := map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000"}
	for name, want := range pragmas {
		var got string
		if err := db.Gorm().Raw("PRAGMA " + name).Scan(&got).Error; err != nil {
			t.Fatalf("PRAGMA %s: %v", name, err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %q, want %q", name, got, want)
		}
	}
	sqlDB, err := db.Gorm().DB()
	if err != nil {
		t.Fatal(err)
	}
	if got := sqlDB.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("SQLite MaxOpenConnections = %d, want 1", got)
	}
}

func TestOpenBareAndRelativeSQLitePaths(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, dsn := range []string{"bare.db", "sqlite:rel/dir/panel.db"} {
		db := storetest.OpenUnmigrated(t, dsn, store.Options{})
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatalf("%s: migrate: %v", dsn, err)
		}
	}
	for _, f := range []string{"bare.db", "rel/dir/panel.db"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s not created: %v", f, err)
		}
	}
}

func TestOpenRejectsUnknownForms(t *testing.T) {
	_, err := store.Open(context.Background(), "postgres://u:secret@h/db", nil)
	if err == nil || !strings.Contains(err.Error(), "sqlite:///") || !strings.Contains(err.Error(), "mysql://") {
		t.Fatalf("Open(postgres://...) error = %v, want one listing the accepted forms", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestOpenUnreachableMariaDB(t *testing.T) {
	// Port 1 on loopback refuses at once; the error must name the server, not the password.
	ctx := context.Background()
	_, err := store.Open(ctx, "mysql://u:secret@tcp(127.0.0.1:1)/ikabud?timeout=2s", nil)
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "secret") {
		t.Errorf("error = %v; want it to name the address and not the password", err)
	}
}

// TestSchemaSameInBothDialects migrates both dialects and compares what the databases report:
// tables, columns (name, type family, nullability), indexes and foreign keys.
func TestSchemaSameInBothDialects(t *testing.T) {
	lite := storetest.Open(t, store.DialectSQLite, store.Options{})
	maria := storetest.Open(t, store.DialectMySQL, store.Options{})

	liteSchema := sqliteSchema(t, lite)
	mariaSchema := mysqlSchema(t, maria)
	if len(liteSchema) == 0 {
		t.Fatal("read no schema from SQLite")
	}
	for _, kind := range []string{"column", "index", "fk"} {
		a, b := filterPrefix(liteSchema, kind), filterPrefix(mariaSchema, kind)
		if !slices.Equal(a, b) {
			t.Errorf("%s definitions differ\nsqlite only: %v\nmysql only:  %v",
				kind, difference(a, b), difference(b, a))
		}
	}
	for _, table := range appTables {
		if !slices.ContainsFunc(liteSchema, func(s string) bool { return strings.HasPrefix(s, "column "+table+".") }) {
			t.Errorf("no columns read for table %s", table)
		}
	}
}

func tableNames(t *testing.T, db *store.DB) []string {
	t.Helper()
	var names []string
	var err error
	if db.Dialect() == store.DialectSQLite {
		err = db.Gorm().Raw(`SELECT name FROM sqlite_master WHERE type = 'table'
			AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'goose_%' ORDER BY name`).Scan(&names).Error
	} else {
		err = db.Gorm().Raw(`SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()
			AND table_name NOT LIKE 'goose\_%' ORDER BY table_name`).Scan(&names).Error
	}
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// typeFamily maps a declared column type to one spelling for both dialects.
func typeFamily(declared string) string {
	s := strings.ToLower(strings.TrimSpace(declared))
	s = strings.TrimSuffix(s, " unsigned")
	switch {
	case s == "integer" || s == "bigint" || s == "bigint(20)":
		return "bigint"
	case strings.HasPrefix(s, "datetime"):
		return "datetime"
	}
	return s
}

func sqliteSchema(t *testing.T, db *store.DB) []string {
	t.Helper()
	g := db.Gorm()
	var out []string
	for _, table := range tableNames(t, db) {
		var cols []struct {
			Name    string
			Type    string
			NotNull int
			PK      int
		}
		if err := g.Raw(fmt.Sprintf("SELECT name, type, \"notnull\" AS not_null, pk FROM pragma_table_info('%s')", table)).
			Scan(&cols).Error; err != nil {
			t.Fatal(err)
		}
		for _, c := range cols {
			// A primary key is never NULL, whatever SQLite's pragma says for INTEGER PRIMARY KEY.
			null := c.NotNull == 0 && c.PK == 0
			out = append(out, fmt.Sprintf("column %s.%s %s null=%v", table, c.Name, typeFamily(c.Type), null))
		}

		var idx []struct {
			Name   string
			Unique int
			Origin string
		}
		if err := g.Raw(fmt.Sprintf("SELECT name, \"unique\" AS `unique`, origin FROM pragma_index_list('%s')", table)).
			Scan(&idx).Error; err != nil {
			t.Fatal(err)
		}
		for _, ix := range idx {
			if ix.Origin == "pk" {
				continue
			}
			var idxCols []string
			if err := g.Raw(fmt.Sprintf("SELECT name FROM pragma_index_info('%s') ORDER BY seqno", ix.Name)).
				Scan(&idxCols).Error; err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("index %s.%s unique=%v (%s)", table, ix.Name, ix.Unique == 1, strings.Join(idxCols, ",")))
		}

		var fks []struct {
			Table    string
			From     string
			To       string
			OnDelete string
		}
		if err := g.Raw(fmt.Sprintf("SELECT \"table\" AS `table`, \"from\" AS `from`, \"to\" AS `to`, on_delete FROM pragma_foreign_key_list('%s')", table)).
			Scan(&fks).Error; err != nil {
			t.Fatal(err)
		}
		for _, fk := range fks {
			out = append(out, fmt.Sprintf("fk %s.%s -> %s.%s on delete %s", table, fk.From, fk.Table, fk.To, strings.ToLower(fk.OnDelete)))
		}
	}
	slices.Sort(out)
	return out
}

func mysqlSchema(t *testing.T, db *store.DB) []string {
	t.Helper()
	g := db.Gorm()
	var out []string
	var cols []struct {
		TableName  string
		ColumnName string
		ColumnType string
		IsNullable string
	}
	if err := g.Raw(`SELECT table_name AS table_name, column_name AS column_name, column_type AS column_type,
			is_nullable AS is_nullable
		FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name NOT LIKE 'goose\_%'`).
		Scan(&cols).Error; err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		out = append(out, fmt.Sprintf("column %s.%s %s null=%v", c.TableName, c.ColumnName, typeFamily(c.ColumnType), c.IsNullable == "YES"))
	}

	var idx []struct {
		TableName string
		IndexName string
		NonUnique int
		Cols      string
	}
	if err := g.Raw(`SELECT table_name AS table_name, index_name AS index_name, MIN(non_unique) AS non_unique,
			GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR ',') AS cols
		FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name NOT LIKE 'goose\_%' AND index_name <> 'PRIMARY'
		GROUP BY table_name, index_name`).Scan(&idx).Error; err != nil {
		t.Fatal(err)
	}
	for _, ix := range idx {
		out = append(out, fmt.Sprintf("index %s.%s unique=%v (%s)", ix.TableName, ix.IndexName, ix.NonUnique == 0, ix.Cols))
	}

	var fks []struct {
		TableName            string
		ColumnName           string
		ReferencedTableName  string
		ReferencedColumnName string
		DeleteRule           string
	}
	if err := g.Raw(`SELECT k.table_name AS table_name, k.column_name AS column_name,
			k.referenced_table_name AS referenced_table_name, k.referenced_column_name AS referenced_column_name,
			r.delete_rule AS delete_rule
		FROM information_schema.key_column_usage k
		JOIN information_schema.referential_constraints r
		  ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name
		WHERE k.table_schema = DATABASE() AND k.referenced_table_name IS NOT NULL`).Scan(&fks).Error; err != nil {
		t.Fatal(err)
	}
	for _, fk := range fks {
		out = append(out, fmt.Sprintf("fk %s.%s -> %s.%s on delete %s", fk.TableName, fk.ColumnName,
			fk.ReferencedTableName, fk.ReferencedColumnName, strings.ToLower(fk.DeleteRule)))
	}
	slices.Sort(out)
	return out
}

func filterPrefix(all []string, kind string) []string {
	var out []string
	for _, s := range all {
		if strings.HasPrefix(s, kind+" ") {
			out = append(out, s)
		}
	}
	return out
}

func difference(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// isErr fails the test unless err wraps want.
func isErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error = %v, want one wrapping %v", what, err, want)
	}
}

func TestMariaDBSessionAndTableSettings(t *testing.T) {
	db := storetest.Open(t, store.DialectMySQL, store.Options{})
	g := db.Gorm()
	var session struct {
		SQLMode string
		Charset string
	}
	if err := g.Raw("SELECT @@SESSION.sql_mode AS sql_mode, @@SESSION.character_set_connection AS charset").Scan(&session).Error; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(session.SQLMode, "STRICT_ALL_TABLES") || session.Charset != "utf8mb4" {
		t.Errorf("session sql_mode=%q charset=%q; want strict mode and utf8mb4", session.SQLMode, session.Charset)
	}
	var tables []struct {
		TableName      string
		Engine         string
		TableCollation string
	}
	if err := g.Raw(`SELECT table_name AS table_name, engine AS engine, table_collation AS table_collation
		FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name NOT LIKE 'goose\_%'`).
		Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	if len(tables) != len(appTables) {
		t.Fatalf("found %d tables, want %d", len(tables), len(appTables))
	}
	for _, tb := range tables {
		if tb.Engine != "InnoDB" || tb.TableCollation != "utf8mb4_bin" {
			t.Errorf("table %s: engine %s, collation %s; want InnoDB, utf8mb4_bin", tb.TableName, tb.Engine, tb.TableCollation)
		}
	}
	// Strict mode: a value too long for its column is an error, not silently cut.
	err := db.CreateInstance(context.Background(), newInstance(strings.Repeat("x", 33), nil))
	if err == nil {
		t.Error("a 33-character instance id was stored in VARCHAR(32)")
	}
}
