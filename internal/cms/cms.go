// Package cms puts a site into an instance: WordPress and DokuWiki copied
// from Debian's packages into the instance's own tree (a copy the instance
// owns, not a shared tree), the instance's own MariaDB database where the
// CMS needs one, and the CMS's installer run in the instance's own pool.
// Files are copied by a process running as the instance's user, so a copy
// can never write where the instance could not.
package cms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/procmgr/fcgi"
	"github.com/ikabud/panel/internal/randtext"
	"github.com/ikabud/panel/internal/sitedb"
)

// Where Debian's packages put the CMS sources.
const (
	WordPressSource = "/usr/share/wordpress"
	DokuWikiSource  = "/usr/share/dokuwiki"
)

// Databases is what the installer needs of the database server.
type Databases interface {
	Create(ctx context.Context, id procmgr.InstanceID) (sitedb.Credentials, error)
	Drop(ctx context.Context, id procmgr.InstanceID) error
}

// Options configure an Installer.
type Options struct {
	Layout procmgr.Layout
	// DB makes the instances' databases; nil: no database server, and a
	// CMS that needs one is refused.
	DB  Databases
	Log *slog.Logger
}

// Installer installs and removes CMS sites.
type Installer struct {
	opt Options
	log *slog.Logger
}

// New makes an Installer.
func New(opt Options) *Installer {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Installer{opt: opt, log: log}
}

// Site is what the CMS's installer is told, validated by ParseSite.
type Site struct {
	Title      string `json:"title,omitempty"`
	AdminUser  string `json:"admin_user,omitempty"`
	AdminEmail string `json:"admin_email,omitempty"`
}

var (
	titleRe = regexp.MustCompile(`^[\p{L}\p{N} .,:;!?'()&+/_-]{1,100}$`)
	adminRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]{2,59}$`)
	emailRe = regexp.MustCompile(`^[A-Za-z0-9._%+-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$`)
)

// ParseSite validates the installer's inputs; empty fields take defaults
// from the instance (title: its id; admin: "admin"; e-mail: admin@ its
// primary domain).
func ParseSite(in Site, spec procmgr.Spec) (Site, error) {
	var errs procmgr.FieldErrors
	out := in
	if out.Title == "" {
		out.Title = string(spec.ID)
	}
	if !titleRe.MatchString(out.Title) {
		errs = append(errs, &procmgr.FieldError{Field: "site_title", Value: out.Title, Rule: "must be 1 to 100 letters, digits, spaces and . , : ; ! ? ' ( ) & + / _ -"})
	}
	if out.AdminUser == "" {
		out.AdminUser = "admin"
	}
	if !adminRe.MatchString(out.AdminUser) {
		errs = append(errs, &procmgr.FieldError{Field: "admin_user", Value: out.AdminUser, Rule: "must be 3 to 60 lowercase letters, digits and _ . -, starting with a letter"})
	}
	if out.AdminEmail == "" {
		host := "example.invalid"
		if len(spec.Domains) > 0 {
			host = string(spec.Domains[0])
		}
		out.AdminEmail = "admin@" + host
	}
	if len(out.AdminEmail) > 254 || !emailRe.MatchString(out.AdminEmail) {
		errs = append(errs, &procmgr.FieldError{Field: "admin_email", Value: out.AdminEmail, Rule: "must be an e-mail address (name@example.com)"})
	}
	if spec.CMS == procmgr.CMSWordPress && len(spec.Domains) == 0 {
		errs = append(errs, &procmgr.FieldError{Field: "domains", Value: "", Rule: "wordpress needs a domain: its address is stored in its database at install"})
	}
	if len(errs) > 0 {
		return Site{}, errs
	}
	return out, nil
}

// NeedsDatabase says whether the CMS gets a database of its own.
func NeedsDatabase(c procmgr.CMS) bool {
	switch c {
	case procmgr.CMSWordPress, procmgr.CMSJoomla, procmgr.CMSDrupal:
		return true
	}
	return false
}

// HasInstaller says whether the CMS is installed by running its own
// installer, which makes an admin login.
func HasInstaller(c procmgr.CMS) bool {
	return c == procmgr.CMSWordPress || c == procmgr.CMSDokuWiki
}

// Result is what an install made that the person who asked must be told
// once: the CMS's admin login.
type Result struct {
	AdminUser     string `json:"admin_user,omitempty"`
	AdminPassword string `json:"admin_password,omitempty"`
	Database      string `json:"database,omitempty"`
	URL           string `json:"url,omitempty"`
}

// StepError says which step of an install failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return "install step " + e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Install puts the CMS of spec into the instance, whose pool runs (the
// installer runs in it). An instance whose public/ holds files already is
// left as it is (an install finished by an earlier attempt, or files the
// tenant put there). A failure names the step; what the call made (files,
// the database) goes with the caller's rollback of the create, which
// purges the instance and Removes its database.
func (i *Installer) Install(ctx context.Context, spec procmgr.Spec, site Site) (res Result, err error) {
	l := i.opt.Layout
	u, err := procmgr.LookupInstanceUser(spec.ID)
	if err != nil {
		return Result{}, &StepError{Step: "instance user", Err: err}
	}
	pub := l.PublicDir(spec.ID)
	if entries, rerr := os.ReadDir(pub); rerr == nil && len(entries) > 0 {
		return Result{}, nil
	}
	// Each step's duration, for the log line of a finished install.
	var took []any
	last := time.Now()
	step := func(name string, err error) error {
		if err == nil {
			took = append(took, name, time.Since(last).Round(time.Millisecond).String())
			last = time.Now()
			return nil
		}
		return &StepError{Step: name, Err: err}
	}
	defer func() {
		if err == nil {
			i.log.Info("installed", append([]any{"instance", string(spec.ID), "action", "install", "cms", string(spec.CMS)}, took...)...)
		}
	}()
	var creds sitedb.Credentials
	if NeedsDatabase(spec.CMS) {
		if i.opt.DB == nil {
			return Result{}, step("database", errors.New("no database server is configured (--db-admin), and "+string(spec.CMS)+" needs one"))
		}
		creds, err = i.opt.DB.Create(ctx, spec.ID)
		if err != nil {
			return Result{}, step("database", err)
		}
		step("database", nil)
		res.Database = creds.Database
	}
	switch spec.CMS {
	case procmgr.CMSWordPress:
		if err := step("copy wordpress", i.copyTree(ctx, u, WordPressSource, pub, "wp-config.php", ".htaccess")); err != nil {
			return Result{}, err
		}
		if err := writeOwned(filepath.Join(l.InstanceDir(spec.ID), "wp-config.php"), wpConfig(creds), u, 0o600); err != nil {
			return Result{}, step("wp-config.php", err)
		}
		pw, err := randtext.From(randtext.Alnum, 20)
		if err != nil {
			return Result{}, step("admin password", err)
		}
		if err := step("wordpress installer", i.runWordPressInstaller(ctx, spec, site, pw)); err != nil {
			return Result{}, err
		}
		res.AdminUser, res.AdminPassword = site.AdminUser, pw
		res.URL = "http://" + string(spec.Domains[0]) + "/wp-admin/"
	case procmgr.CMSDokuWiki:
		pw, err := i.installDokuWiki(ctx, spec, site, u)
		if err := step("dokuwiki", err); err != nil {
			return Result{}, err
		}
		res.AdminUser, res.AdminPassword = site.AdminUser, pw
		if len(spec.Domains) > 0 {
			res.URL = "http://" + string(spec.Domains[0]) + "/doku.php?do=login"
		}
	default:
		if err := writeOwned(filepath.Join(pub, "index.php"), indexPage(spec), u, 0o640); err != nil {
			return Result{}, step("index page", err)
		}
		if NeedsDatabase(spec.CMS) {
			if err := writeOwned(filepath.Join(l.InstanceDir(spec.ID), "database.php"), credentialsFile(creds), u, 0o600); err != nil {
				return Result{}, step("database.php", err)
			}
		}
	}
	return res, nil
}

// Remove drops the instance's database and user when purge; without
// purge they are kept, as the files are. It reports what it kept.
func (i *Installer) Remove(ctx context.Context, id procmgr.InstanceID, cms procmgr.CMS, purge bool) (kept string, err error) {
	if !NeedsDatabase(cms) || i.opt.DB == nil {
		return "", nil
	}
	db, _ := sitedb.Names(id)
	if !purge {
		return "database " + db + " and its user (remove --purge drops them)", nil
	}
	return "", i.opt.DB.Drop(ctx, id)
}

// copyTree copies src's entries (but skip) into dst, as the instance's
// user, following the package's symlinks (the copy holds files, never links
// out of the tree).
func (i *Installer) copyTree(ctx context.Context, u procmgr.InstanceUser, src, dst string, skip ...string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("%s is missing (install Debian's package): %w", src, err)
	}
	args := []string{"-R", "-L", "--no-preserve=all", "--"}
	for _, e := range entries {
		if slices.Contains(skip, e.Name()) {
			continue
		}
		args = append(args, filepath.Join(src, e.Name()))
	}
	args = append(args, dst+"/")
	cmd := exec.CommandContext(ctx, "/bin/cp", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cp as %s: %w: %s", u.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// copyTreeExcept is copyTree where skip may name paths below src's top
// level ("lib/plugins/testing"): the directories on the way are made and
// walked, and everything else is copied whole.
func (i *Installer) copyTreeExcept(ctx context.Context, u procmgr.InstanceUser, src, dst string, skip ...string) error {
	var top, deeper []string
	walk := map[string][]string{}
	for _, p := range skip {
		first, rest, nested := strings.Cut(p, "/")
		if !nested {
			top = append(top, first)
			continue
		}
		deeper = append(deeper, first)
		walk[first] = append(walk[first], rest)
	}
	if err := i.copyTree(ctx, u, src, dst, append(top, deeper...)...); err != nil {
		return err
	}
	for dir, rest := range walk {
		if err := mkdirOwned(filepath.Join(dst, dir), u); err != nil {
			return err
		}
		// A symlinked directory of the package is walked where it leads.
		real, err := filepath.EvalSymlinks(filepath.Join(src, dir))
		if err != nil {
			return err
		}
		if err := i.copyTreeExcept(ctx, u, real, filepath.Join(dst, dir), rest...); err != nil {
			return err
		}
	}
	return nil
}

// writeOwned writes a new file for the instance, never through a link.
func writeOwned(path string, data []byte, u procmgr.InstanceUser, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	if err := f.Chown(u.UID, u.GID); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phpString quotes s for a single-quoted PHP string.
func phpString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// wpConfig is the instance's wp-config.php, one directory above public/
// (WordPress looks there too), so nginx could never serve it.
func wpConfig(c sitedb.Credentials) []byte {
	var b bytes.Buffer
	b.WriteString("<?php\n// Written by Ikabud Panel when the instance was created. The database and its\n// password are this instance's alone.\n")
	def := func(k, v string) { fmt.Fprintf(&b, "define(%s, %s);\n", phpString(k), phpString(v)) }
	def("DB_NAME", c.Database)
	def("DB_USER", c.User)
	def("DB_PASSWORD", c.Password)
	def("DB_HOST", "localhost:"+c.Socket)
	def("DB_CHARSET", "utf8mb4")
	def("DB_COLLATE", "")
	for _, k := range []string{"AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT"} {
		salt, err := randtext.From(randtext.Alnum, 64)
		if err != nil {
			panic(err) // the system's random source failed
		}
		def(k, salt)
	}
	b.WriteString("$table_prefix = 'wp_';\n")
	b.WriteString("define('WP_DEBUG', false);\n")
	// The files are the instance's own: updates write them directly.
	b.WriteString("define('FS_METHOD', 'direct');\n")
	b.WriteString("if (!defined('ABSPATH')) {\n    define('ABSPATH', __DIR__ . '/public/');\n}\n")
	b.WriteString("require_once ABSPATH . 'wp-settings.php';\n")
	return b.Bytes()
}

// credentialsFile gives a Joomla or Drupal site its database, for the
// customer's own installer.
func credentialsFile(c sitedb.Credentials) []byte {
	return []byte("<?php\n// The database of this instance, made by Ikabud Panel. Use these in your CMS's installer.\nreturn [\n" +
		"    'database' => " + phpString(c.Database) + ",\n" +
		"    'user' => " + phpString(c.User) + ",\n" +
		"    'password' => " + phpString(c.Password) + ",\n" +
		"    'socket' => " + phpString(c.Socket) + ",\n];\n")
}

// indexPage is the page of a new empty PHP site.
func indexPage(spec procmgr.Spec) []byte {
	return []byte(`<?php
// The first page of instance ` + string(spec.ID) + `, written by Ikabud Panel. Replace it with your site.
header('Content-Type: text/html; charset=utf-8');
?><!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>` + string(spec.ID) + `</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:4em auto">
<h1>It works</h1>
<p>This is the site of instance <code>` + string(spec.ID) + `</code>, served by PHP <?= htmlspecialchars(PHP_VERSION) ?>.</p>
<p>Upload your site into its <code>public/</code> directory.</p>
</body></html>
`)
}

// runWordPressInstaller runs WordPress's own installer (install.php, step
// 2) in the instance's pool, over its socket, as a browser would post it.
func (i *Installer) runWordPressInstaller(ctx context.Context, spec procmgr.Spec, site Site, password string) error {
	l := i.opt.Layout
	host := string(spec.Domains[0])
	form := url.Values{
		"weblog_title":    {site.Title},
		"user_name":       {site.AdminUser},
		"admin_password":  {password},
		"admin_password2": {password},
		"pw_weak":         {"1"},
		"admin_email":     {site.AdminEmail},
		"blog_public":     {"1"},
		"language":        {""},
		"Submit":          {"Install WordPress"},
	}
	body := []byte(form.Encode())
	pub := l.PublicDir(spec.ID)
	req := fcgi.Request{
		Params: map[string]string{
			"REQUEST_METHOD":    "POST",
			"SCRIPT_FILENAME":   pub + "/wp-admin/install.php",
			"SCRIPT_NAME":       "/wp-admin/install.php",
			"REQUEST_URI":       "/wp-admin/install.php?step=2",
			"DOCUMENT_URI":      "/wp-admin/install.php",
			"DOCUMENT_ROOT":     pub,
			"QUERY_STRING":      "step=2",
			"CONTENT_TYPE":      "application/x-www-form-urlencoded",
			"CONTENT_LENGTH":    fmt.Sprint(len(body)),
			"SERVER_PROTOCOL":   "HTTP/1.1",
			"GATEWAY_INTERFACE": "CGI/1.1",
			"SERVER_SOFTWARE":   "nginx",
			"REMOTE_ADDR":       "127.0.0.1",
			"SERVER_ADDR":       "127.0.0.1",
			"SERVER_PORT":       "80",
			"SERVER_NAME":       host,
			"HTTP_HOST":         host,
			"REQUEST_SCHEME":    "http",
			"REDIRECT_STATUS":   "200",
		},
		Stdin: body,
	}
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := fcgi.Do(ictx, l.SocketPath(spec.ID), req)
	if err != nil {
		return err
	}
	if resp.Status != 200 || !bytes.Contains(resp.Body, []byte("Success!")) {
		return fmt.Errorf("install.php answered %d: %s", resp.Status, summarize(resp.Body, resp.Stderr))
	}
	return nil
}

// summarize is the gist of a failed page, for the error.
func summarize(body, stderr []byte) string {
	text := regexp.MustCompile(`<[^>]*>`).ReplaceAll(body, []byte(" "))
	text = bytes.Join(bytes.Fields(text), []byte(" "))
	if len(text) > 300 {
		text = text[:300]
	}
	if len(stderr) > 0 {
		return string(text) + " (stderr: " + string(bytes.TrimSpace(stderr[:min(len(stderr), 300)])) + ")"
	}
	return string(text)
}
