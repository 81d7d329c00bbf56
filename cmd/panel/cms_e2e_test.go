package main

import (
	"database/sql"
	"os"
	"os/user"
	"regexp"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/procmgrtest"
	"github.com/ikabud/panel/internal/sitedb"
)

// mariadbRoot is the admin connection the tests check databases with.
func mariadbRoot(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", "root@unix("+sitedb.DefaultSocket+")/")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("MariaDB does not answer at %s (scripts/deps.sh starts it): %v", sitedb.DefaultSocket, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dbLeft says what of the instance's database and user exists.
func dbLeft(t *testing.T, db *sql.DB, id procmgr.InstanceID) (database, dbUser bool) {
	t.Helper()
	name, u := sitedb.Names(id)
	var n int
	db.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n)
	database = n > 0
	db.QueryRow("SELECT COUNT(*) FROM mysql.user WHERE User = ?", u).Scan(&n)
	return database, n > 0
}

var adminPasswordRe = regexp.MustCompile(`(?m)^wordpress admin: user admin, password ([A-Za-z0-9]{20}) \(shown once\)$`)

func TestWordPressThroughTheFrontDoor(t *testing.T) {
	forEachBackend(t, testWordPress)
}

func testWordPress(t *testing.T, backend string) {
	root := mariadbRoot(t)
	d, addr := sitesDaemon(t, backend)
	id := procmgrtest.NewID("blog")
	domain := string(id) + ".example.test"
	out := d.must("create", string(id), "--cms", "wordpress", "--domain", domain, "--site-title", "Tour blog")
	m := adminPasswordRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed no admin password:\n%s", out)
	}
	code, body := visit(t, addr, domain, "/")
	if code != 200 || !strings.Contains(body, "<title>Tour blog</title>") || !strings.Contains(body, "wp-content/themes/twentytwentythree") {
		t.Fatalf("front page: %d %.400q", code, body)
	}
	// The password is in no log, status or audit record.
	for _, text := range []string{d.log.String(), d.must("status", string(id)), d.must("audit", string(id))} {
		if strings.Contains(text, m[1]) {
			t.Errorf("the admin password appears outside the create's answer:\n%s", text)
		}
	}
	// The database user has privileges on its own database only.
	dbName, dbUser := sitedb.Names(id)
	var grants []string
	rows, err := root.Query("SHOW GRANTS FOR '" + dbUser + "'@'localhost'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var g string
		rows.Scan(&g)
		grants = append(grants, g)
	}
	rows.Close()
	all := strings.Join(grants, "\n")
	if !strings.Contains(all, "ON `"+dbName+"`.*") || strings.Contains(all, "ALL PRIVILEGES ON *.*") {
		t.Errorf("grants of %s:\n%s", dbUser, all)
	}
	// wp-config.php: the instance's alone, outside the document root.
	cfg := d.layout.InstanceDir(id) + "/wp-config.php"
	st, err := os.Stat(cfg)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("wp-config.php: %v, mode %v", err, st.Mode())
	}
	if code, body := visit(t, addr, domain, "/../wp-config.php"); code == 200 && strings.Contains(body, "DB_PASSWORD") {
		t.Errorf("wp-config.php served")
	}

	d.must("stop", string(id))
	if code, _ := visit(t, addr, domain, "/"); code != 502 {
		t.Errorf("stopped: %d, want 502", code)
	}
	d.must("start", string(id))
	if code, _ := visit(t, addr, domain, "/"); code != 200 {
		t.Errorf("started again: %d, want 200", code)
	}

	out = d.must("remove", string(id), "--purge")
	if !strings.Contains(out, "its database and its database user") {
		t.Errorf("remove --purge said: %s", out)
	}
	if db, u := dbLeft(t, root, id); db || u {
		t.Errorf("after remove --purge: database left %v, user left %v", db, u)
	}
	if _, err := os.Stat(d.layout.InstanceDir(id)); !os.IsNotExist(err) {
		t.Errorf("files left: %v", err)
	}
	if _, err := user.Lookup(id.UserName()); err == nil {
		t.Errorf("Unix user %s left", id.UserName())
	}
	if files := siteFiles(t, d); strings.Contains(files, string(id)) {
		t.Errorf("vhost left:\n%s", files)
	}
	if code, _ := visit(t, addr, domain, "/"); code != 404 {
		t.Errorf("removed site answers %d", code)
	}
}

// A create whose database server is down fails at that step, says so, and
// leaves nothing behind.
func TestCreateFailingHalfWayLeavesNothing(t *testing.T) {
	requireSystemd(t)
	root := mariadbRoot(t)
	l := freeAddr(t)
	d := newDaemonOn(t, "systemd", "127.0.0.1:0", "--http-listen", l, "--nginx", "supervise", "--db-admin", "root@unix(/run/ikabud-no-such-mariadb.sock)/")
	t.Cleanup(func() { stopSupervisedNginx(d) })
	id := procmgrtest.NewID("half")
	domain := string(id) + ".example.test"
	out, err := d.panel("create", string(id), "--cms", "wordpress", "--domain", domain)
	if err == nil || !strings.Contains(err.Error(), "install step database") {
		t.Fatalf("create with MariaDB down: %v\n%s", err, out)
	}
	if _, err := user.Lookup(id.UserName()); err == nil {
		t.Errorf("Unix user left")
	}
	if _, err := os.Stat(d.layout.InstanceDir(id)); !os.IsNotExist(err) {
		t.Errorf("files left: %v", err)
	}
	if files := siteFiles(t, d); strings.Contains(files, string(id)) {
		t.Errorf("vhost left")
	}
	if db, u := dbLeft(t, root, id); db || u {
		t.Errorf("database left %v, user %v", db, u)
	}
	if out := d.must("list"); strings.Contains(out, string(id)) {
		t.Errorf("listed after a failed create:\n%s", out)
	}
}

func TestDokuWikiThroughTheFrontDoor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		d, addr := sitesDaemon(t, backend)
		id := procmgrtest.NewID("wiki")
		domain := string(id) + ".example.test"
		out := d.must("create", string(id), "--cms", "dokuwiki", "--domain", domain, "--site-title", "Team wiki")
		if !regexp.MustCompile(`(?m)^dokuwiki admin: user admin, password [A-Za-z0-9]{20} \(shown once\)$`).MatchString(out) {
			t.Errorf("create printed no admin login:\n%s", out)
		}
		code, body := visit(t, addr, domain, "/doku.php")
		if code != 200 || !strings.Contains(body, "<title>start [Team wiki]</title>") || !strings.Contains(body, "This wiki is ready") {
			t.Fatalf("front page: %d %.300q", code, body)
		}
		if code, _ := visit(t, addr, domain, "/doku.php?do=login"); code != 200 {
			t.Errorf("login page: %d", code)
		}
		// Its configuration and data are outside the document root.
		for _, p := range []string{"/../dokuwiki/conf/users.auth.php", "/dokuwiki/conf/users.auth.php", "/conf/users.auth.php"} {
			if code, body := visit(t, addr, domain, p); code == 200 && strings.Contains(body, "admin:") {
				t.Errorf("%s served the users file", p)
			}
		}
		d.must("remove", string(id), "--purge")
		if _, err := os.Stat(d.layout.InstanceDir(id)); !os.IsNotExist(err) {
			t.Errorf("files left: %v", err)
		}
	})
}
