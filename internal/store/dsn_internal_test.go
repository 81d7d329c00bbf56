package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseDSNForms(t *testing.T) {
	t.Chdir(t.TempDir())
	cwd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dsn, dialect, path string
	}{
		{"sqlite:///var/lib/ikabud/panel.db", DialectSQLite, "/var/lib/ikabud/panel.db"},
		{"sqlite:relative/panel.db", DialectSQLite, filepath.Join(cwd, "relative/panel.db")},
		{"sqlite:panel.sqlite", DialectSQLite, filepath.Join(cwd, "panel.sqlite")},
		{"/srv/x/panel.db", DialectSQLite, "/srv/x/panel.db"},
		{"data/panel.db", DialectSQLite, filepath.Join(cwd, "data/panel.db")},
		{"mysql://u:p@tcp(db.example:3306)/ikabud", DialectMySQL, ""},
	}
	for _, c := range cases {
		got, err := parseDSN(c.dsn)
		if err != nil {
			t.Errorf("parseDSN(%q): %v", c.dsn, err)
			continue
		}
		if got.dialect != c.dialect || got.sqlitePath != c.path {
			t.Errorf("parseDSN(%q) = %s %q, want %s %q", c.dsn, got.dialect, got.sqlitePath, c.dialect, c.path)
		}
	}
}

func TestParseDSNRejects(t *testing.T) {
	cases := []struct{ dsn, wantInErr string }{
		{"", "accepted forms"},
		{"postgres://u@h/db", `scheme "postgres"`},
		{"panel.sqlite3", "accepted forms"},
		{"sqlite://relative.db", "absolute path"},
		{"sqlite:", "names no file"},
		{"sqlite:/tmp/a?b.db", "'?'"},
		{"sqlite:file:x.db", "URI"},
		{"mysql://u:secret@tcp(h:3306)/", "names no database"},
		{"mysql://u:secret@tcp(h:3306", "accepted forms"},
	}
	for _, c := range cases {
		_, err := parseDSN(c.dsn)
		if err == nil {
			t.Errorf("parseDSN(%q) accepted it", c.dsn)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.wantInErr) {
			t.Errorf("parseDSN(%q) error %q does not mention %q", c.dsn, msg, c.wantInErr)
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("parseDSN(%q) error %q leaks the password", c.dsn, msg)
		}
	}
}

func TestMySQLConfigForcesSettings(t *testing.T) {
	cfg, err := mysqlConfig("u:p@tcp(h:3306)/ikabud?parseTime=false&loc=Local&multiStatements=true&charset=latin1&interpolateParams=true")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ParseTime || cfg.Loc != time.UTC || cfg.MultiStatements || !cfg.ClientFoundRows || cfg.InterpolateParams {
		t.Errorf("forced settings not applied: parseTime=%v loc=%v multiStatements=%v clientFoundRows=%v interpolateParams=%v",
			cfg.ParseTime, cfg.Loc, cfg.MultiStatements, cfg.ClientFoundRows, cfg.InterpolateParams)
	}
	if dsn := cfg.FormatDSN(); !strings.Contains(dsn, "charset=utf8mb4") || strings.Contains(dsn, "latin1") {
		t.Errorf("charset not forced to utf8mb4: %s", dsn)
	}
	if cfg.Params["sql_mode"] != "'TRADITIONAL'" {
		t.Errorf("sql_mode = %q, want the strict default", cfg.Params["sql_mode"])
	}
	if cfg.Timeout != mysqlDialTimeout {
		t.Errorf("dial timeout = %v, want %v", cfg.Timeout, mysqlDialTimeout)
	}

	own, err := mysqlConfig("u:p@tcp(h:3306)/ikabud?sql_mode=%27ANSI%27&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if own.Params["sql_mode"] != "'ANSI'" || own.Timeout != 2*time.Second {
		t.Errorf("explicit sql_mode/timeout not kept: %q %v", own.Params["sql_mode"], own.Timeout)
	}
}

func TestBoundText(t *testing.T) {
	if got := boundText("short"); got != "short" {
		t.Errorf("boundText(short) = %q", got)
	}
	if got := boundText("bad \xff byte"); got != "bad \uFFFD byte" {
		t.Errorf("invalid UTF-8 not replaced: %q", got)
	}
	long := strings.Repeat("é", MaxTextBytes) // 2 bytes each
	got := boundText(long)
	if len(got) > MaxTextBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, truncatedMark) {
		t.Errorf("boundText(long): len %d, valid %v, suffix %q", len(got), utf8.ValidString(got), got[len(got)-20:])
	}
}

func TestNormTime(t *testing.T) {
	in := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 5*3600+1800))
	got := normTime(in)
	if got.Location() != time.UTC || got.Nanosecond() != 123456000 || !got.Equal(in.Truncate(time.Microsecond)) {
		t.Errorf("normTime(%v) = %v", in, got)
	}
	if !normTime(time.Time{}).IsZero() {
		t.Error("normTime(zero) is not zero")
	}
}
