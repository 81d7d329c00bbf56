package cms

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/randtext"
)

// DokuWikiConfig is where Debian's package keeps DokuWiki's configuration
// (its code reads it through a preload the instance's copy replaces).
const DokuWikiConfig = "/etc/dokuwiki"

// dokuDataDirs are the directories DokuWiki writes under its savedir.
var dokuDataDirs = []string{"pages", "attic", "meta", "media", "media_attic", "media_meta", "cache", "index", "locks", "tmp", "log"}

// installDokuWiki copies Debian's DokuWiki into public/, gives it a
// configuration and a data directory of its own beside public/
// (<instance>/dokuwiki/{conf,data}, never served), an admin user with a
// generated password, and a start page. It returns the admin password.
func (i *Installer) installDokuWiki(ctx context.Context, spec procmgr.Spec, site Site, u procmgr.InstanceUser) (string, error) {
	l := i.opt.Layout
	pub := l.PublicDir(spec.ID)
	base := filepath.Join(l.InstanceDir(spec.ID), "dokuwiki")
	conf, data := filepath.Join(base, "conf"), filepath.Join(base, "data")
	// The "testing" plugin is DokuWiki's own test suite, readable by
	// root alone in Debian's package.
	if err := i.copyTreeExcept(ctx, u, DokuWikiSource, pub, ".htaccess", "lib/plugins/testing"); err != nil {
		return "", fmt.Errorf("copy dokuwiki: %w", err)
	}
	dirs := []string{base, conf, data}
	for _, d := range dokuDataDirs {
		dirs = append(dirs, filepath.Join(data, d))
	}
	dirs = append(dirs, filepath.Join(data, "pages", "wiki"))
	for _, d := range dirs {
		if err := mkdirOwned(d, u); err != nil {
			return "", err
		}
	}
	// Debian's configuration, but the links to its own ACL and users (and
	// the web servers' snippets).
	if err := i.copyTree(ctx, u, DokuWikiConfig, conf, "acl.auth.php", "users.auth.php", "local.php", "apache.conf", "lighttpd.conf", "htaccess", ".htaccess"); err != nil {
		return "", fmt.Errorf("copy dokuwiki's configuration: %w", err)
	}
	pw, err := randtext.From(randtext.Alnum, 20)
	if err != nil {
		return "", err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	files := map[string]string{
		filepath.Join(pub, "inc", "preload.php"): "<?php\n// Written by Ikabud Panel: this instance's own configuration, outside the document root.\n" +
			"if (!defined('DOKU_CONF')) define('DOKU_CONF', " + phpString(conf+"/") + ");\n",
		filepath.Join(conf, "local.php"): "<?php\n// Written by Ikabud Panel when the instance was created.\n" +
			"$conf['title'] = " + phpString(site.Title) + ";\n" +
			"$conf['savedir'] = " + phpString(data) + ";\n" +
			"$conf['useacl'] = 1;\n$conf['superuser'] = '@admin';\n$conf['passcrypt'] = 'bcrypt';\n",
		filepath.Join(conf, "acl.auth.php"): "# Access: everyone reads, signed-in users write, admins everything.\n" +
			"*               @ALL          1\n*               @user         8\n",
		// user:hash:real name:email:groups
		filepath.Join(conf, "users.auth.php"): "# Users of this wiki, written by Ikabud Panel.\n" +
			site.AdminUser + ":" + string(hash) + ":Admin:" + site.AdminEmail + ":admin,user\n",
		filepath.Join(data, "pages", "start.txt"): "====== " + strings.ReplaceAll(site.Title, "=", "-") + " ======\n\n" +
			"This wiki is ready. Sign in as ''" + site.AdminUser + "'' to edit this page.\n",
	}
	for path, body := range files {
		if err := writeOwned(path, []byte(body), u, 0o640); err != nil {
			return "", err
		}
	}
	return pw, nil
}

// mkdirOwned makes a new directory for the instance (an existing one is
// kept), never through a link.
func mkdirOwned(path string, u procmgr.InstanceUser) error {
	if err := os.Mkdir(path, 0o750); err != nil && !os.IsExist(err) {
		return err
	}
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	return os.Lchown(path, u.UID, u.GID)
}
