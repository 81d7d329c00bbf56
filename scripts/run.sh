#!/usr/bin/env bash
# run.sh: `make run`. On a fresh machine like these: installs PHP-FPM, nginx, MariaDB and the CMS packages from Debian's
# archive when missing (and starts MariaDB when it does not run), builds the panel, and runs `panel serve` in the
# foreground with its defaults: SQLite at /var/lib/ikabud/panel.db, systemd when the host was booted with it and the
# built-in supervisor otherwise, HTTP on 127.0.0.1:8080, the command line's socket at /run/ikabud/panel.sock. On a
# database with no users it creates the admin `admin` and prints its password, once.
#
#   scripts/run.sh [serve flags...]     e.g. scripts/run.sh --backend supervise
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

[[ $(id -u) == 0 ]] || {
	echo "run: panel serve creates Unix users and services: run it as root" >&2
	exit 1
}
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
check_go
missing=()
[[ -x /usr/sbin/php-fpm8.2 ]] || missing+=(php8.2-fpm)
[[ -x /usr/bin/php8.2 ]] || missing+=(php8.2-cli)
[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
[[ -e /etc/php/8.2/mods-available/mysqli.ini ]] || missing+=(php8.2-mysql)
[[ -e /usr/share/wordpress/wp-settings.php ]] || missing+=(wordpress wordpress-theme-twentytwentythree)
[[ -e /usr/share/dokuwiki/doku.php ]] || missing+=(dokuwiki)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
# WordPress sites get their databases from MariaDB, through its socket as root: start one when none runs (its root
# account is left as Debian makes it, socket authentication only).
if ! port_open; then
	[[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server mariadb-client
	start_mariadb
fi

go build -o bin/panel ./cmd/panel
echo "run: starting the panel; open the URL it prints and sign in as admin (the password is printed once, on the first run), or in another terminal try: bin/panel create blog --cms wordpress --domain blog.example.test; curl -H 'Host: blog.example.test' http://127.0.0.1/" >&2
exec bin/panel serve --init-admin admin "$@"
