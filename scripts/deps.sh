#!/usr/bin/env bash
# deps.sh: make sure this machine (Debian 12) has the real parts the tests use, installing what is missing from
# Debian's archive. Idempotent, and quick when everything is there: it only looks, and runs apt-get (one update,
# one install) when something is missing.
#
#   Go            /usr/local/go/bin (Go is not taken from Debian: bookworm's is far older than go.mod asks)
#   PHP-FPM, PHP  php8.2-fpm, php8.2-cli
#   nginx         nginx (installed, never started as a service by us; tests run their own)
#   CMS sources   wordpress (+ its default theme), dokuwiki, php8.2-mysql: what `create --cms` copies from
#   chromium      Debian's chromium, driven headless by the browser tests (chromedp)
#   systemd       systemd, util-linux (unshare, nsenter, setsid), bsdutils (script): scripts/with-systemd.sh
#   tools         procps, iproute2
#   MariaDB       whatever answers on 127.0.0.1:3306; when nothing does, mariadb-server is installed and started
#                 here without systemd (PID 1 of these machines is not systemd)
#
# In every case root must be able to log in over TCP at 127.0.0.1:3306 with no password, as the tests do.
# Services that package scripts would start during the install are held back with a policy-rc.d.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) export PATH="/usr/local/go/bin:$PATH" ;;
esac

readonly POLICY_RC_D=/usr/sbin/policy-rc.d
readonly MARIADB_WAIT=60 # seconds for a freshly started MariaDB to answer

# Where a MariaDB started here listens and keeps its data: Debian's defaults, given explicitly so that a changed
# my.cnf cannot move them. (Plain variables so that a test of this script can point them at a scratch server.)
MARIADB_PORT=3306
MARIADB_DATADIR=/var/lib/mysql
MARIADB_RUNDIR=/run/mysqld
MARIADB_LOG=/var/log/mysql/ikabud-deps-mariadbd.log

log() { printf 'deps: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# The parts that are plain packages: "package path-that-proves-it-is-installed".
readonly PACKAGES=(
	"php8.2-fpm /usr/sbin/php-fpm8.2"
	"php8.2-cli /usr/bin/php8.2"
	"nginx /usr/sbin/nginx"
	"php8.2-mysql /etc/php/8.2/mods-available/mysqli.ini"
	"wordpress /usr/share/wordpress/wp-settings.php"
	"wordpress-theme-twentytwentythree /usr/share/wordpress/wp-content/themes/twentytwentythree/style.css"
	"dokuwiki /usr/share/dokuwiki/doku.php"
	"chromium /usr/bin/chromium"
	"systemd /lib/systemd/systemd"
	"procps /usr/bin/pgrep"
	"iproute2 /usr/bin/ss"
	"util-linux /usr/bin/unshare"
	"util-linux /usr/bin/nsenter"
	"util-linux /usr/bin/setsid"
	"bsdutils /usr/bin/script"
)

APT_UPDATED=""
POLICY_RC_D_OURS=""

# apt_install PACKAGE...: install from Debian's archive, with no service started by the packages' scripts.
apt_install() {
	[[ $(id -u) == 0 ]] || die "missing: $*; run as root so that they can be installed"
	command -v apt-get >/dev/null || die "missing: $*; and there is no apt-get to install them"
	if [[ ! -e $POLICY_RC_D ]]; then
		# invoke-rc.d asks policy-rc.d; 101 = "action forbidden", so postinst scripts install without starting
		printf '#!/bin/sh\n# written by ikabud scripts/deps.sh for the length of an install\nexit 101\n' >"$POLICY_RC_D"
		chmod 0755 "$POLICY_RC_D"
		POLICY_RC_D_OURS=1
		trap 'remove_policy_rc_d' EXIT
	fi
	local -a apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
	if [[ -z $APT_UPDATED ]]; then
		log "apt-get update"
		"${apt[@]}" update >&2 || die "apt-get update failed"
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	"${apt[@]}" install --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >&2 ||
		die "could not install from Debian's archive: $*"
	remove_policy_rc_d
}

remove_policy_rc_d() {
	if [[ -n $POLICY_RC_D_OURS ]]; then
		rm -f "$POLICY_RC_D"
		POLICY_RC_D_OURS=""
	fi
}

check_go() {
	command -v go >/dev/null ||
		die "Go not found (looked in PATH and /usr/local/go/bin): install the version go.mod names from https://go.dev/dl/ into /usr/local/go"
	go version >/dev/null || die "$(command -v go) does not run"
}

# What make bench adds: the peer it compares the supervisor with.
readonly BENCH_PACKAGES=(
	"supervisor /usr/bin/supervisord"
	"wrk /usr/bin/wrk"
)

check_packages() {
	local entry pkg path
	local -a missing=()
	local -a wanted=("${PACKAGES[@]}")
	[[ -n ${WITH_BENCH:-} ]] && wanted+=("${BENCH_PACKAGES[@]}")
	for entry in "${wanted[@]}"; do
		read -r pkg path <<<"$entry"
		[[ -e $path ]] && continue
		[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	apt_install "${missing[@]}"
	for entry in "${wanted[@]}"; do
		read -r pkg path <<<"$entry"
		[[ -e $path ]] || die "$pkg is installed but $path is still missing"
	done
}

# port_open: whether something accepts TCP connections on 127.0.0.1:MARIADB_PORT.
port_open() { timeout 2 bash -c ": </dev/tcp/127.0.0.1/$MARIADB_PORT" 2>/dev/null; }

# root_login: whether root logs in over TCP with no password, as the tests will.
root_login() {
	mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$MARIADB_PORT" -uroot --connect-timeout=2 \
		-e 'select 1' >/dev/null 2>&1
}

# start_mariadb: start mariadbd directly (no systemd here), initialising its data directory if needed, and wait
# until it answers.
start_mariadb() {
	local sock="$MARIADB_RUNDIR/mysqld.sock" i
	install -d -o mysql -g mysql -m 0755 "$MARIADB_RUNDIR"
	[[ -d $(dirname "$MARIADB_LOG") ]] || install -d -o mysql -g adm -m 2750 "$(dirname "$MARIADB_LOG")"
	if [[ ! -d $MARIADB_DATADIR/mysql ]]; then
		log "initialising $MARIADB_DATADIR"
		[[ -d $MARIADB_DATADIR ]] || install -d -o mysql -g mysql -m 0755 "$MARIADB_DATADIR"
		mariadb-install-db --user=mysql --datadir="$MARIADB_DATADIR" --skip-test-db \
			--auth-root-authentication-method=socket >>"$MARIADB_LOG" 2>&1 ||
			die "mariadb-install-db failed; see $MARIADB_LOG"
	fi
	log "starting mariadbd on 127.0.0.1:$MARIADB_PORT (log: $MARIADB_LOG)"
	start-stop-daemon --start --oknodo --background --output "$MARIADB_LOG" \
		--pidfile "$MARIADB_RUNDIR/mysqld.pid" --exec /usr/sbin/mariadbd -- \
		--user=mysql --datadir="$MARIADB_DATADIR" --port="$MARIADB_PORT" --bind-address=127.0.0.1 \
		--socket="$sock" --pid-file="$MARIADB_RUNDIR/mysqld.pid" --log-error="$MARIADB_LOG" ||
		die "could not start mariadbd; see $MARIADB_LOG"
	for ((i = 0; i < MARIADB_WAIT * 5; i++)); do
		port_open && return 0
		sleep 0.2
	done
	tail -n 20 "$MARIADB_LOG" >&2 || true
	die "mariadbd started but nothing answers on 127.0.0.1:$MARIADB_PORT after ${MARIADB_WAIT}s (log above: $MARIADB_LOG)"
}

# fix_root_login: give root a password-less TCP login through the local socket, where a fresh Debian install lets
# only the operating system's root in (unix_socket authentication).
fix_root_login() {
	local sock="$MARIADB_RUNDIR/mysqld.sock"
	[[ -S $sock ]] || return 1
	log "allowing root to log in over TCP at 127.0.0.1:$MARIADB_PORT with no password"
	mariadb --no-defaults --protocol=socket -S "$sock" -uroot <<-'EOF'
		ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
		CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
		GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
	EOF
}

check_mariadb() {
	if ! port_open; then
		local -a missing=()
		[[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
		command -v mariadb >/dev/null || missing+=(mariadb-client)
		((${#missing[@]} == 0)) || apt_install "${missing[@]}"
		start_mariadb
	fi
	if ! command -v mariadb >/dev/null; then
		log "note: something answers on 127.0.0.1:$MARIADB_PORT, but there is no mariadb client to check root's login"
		return 0
	fi
	root_login && return 0
	fix_root_login || true
	root_login ||
		die "MariaDB on 127.0.0.1:$MARIADB_PORT does not let root in over TCP with no password, and it could not be changed through $MARIADB_RUNDIR/mysqld.sock"
}

main() {
	# --bench: also what make bench needs (Debian's supervisor, the peer).
	[[ ${1:-} == --bench ]] && WITH_BENCH=1
	check_go
	check_packages
	check_mariadb
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
