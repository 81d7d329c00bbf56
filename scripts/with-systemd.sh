#!/usr/bin/env bash
# with-systemd.sh: run a command inside a private, freshly booted systemd.
#
#   scripts/with-systemd.sh CMD [ARGS...]   boot, run CMD inside, power off, exit with CMD's status
#   scripts/with-systemd.sh --shell         boot, print how to enter it, leave it running
#   scripts/with-systemd.sh --stop PID      power off a systemd that --shell started
#
# The recipe (docs/architecture.md, "Testing with real parts"): systemd runs as PID 1 of private
# PID, mount and cgroup namespaces (network and the filesystem are shared with the host), booted to basic.target
# with the tmpfiles units masked, and CMD runs inside it through `nsenter -a`. On top of the recipe, so that several
# runs at once (and a colleague's private systemd) never see each other's units, journal or console:
#
#   - each run gets its own cgroup subtree, <hierarchy>/ikabud-test/<run>/payload, which becomes the root of its
#     cgroup namespace, and the cgroup filesystems are mounted afresh inside; without this every private systemd
#     uses the host's /init.scope and /system.slice, so two runs starting the same unit share one cgroup;
#   - /var/log/journal is a private tmpfs inside (journald would otherwise flush into the host's persistent journal,
#     which every run and the host share, and rotate the others' files as unclean);
#   - /dev/console inside is a pty whose output `script` writes to a log file (otherwise systemd's boot messages go
#     to the host's console and nothing is left to show when a boot fails);
#   - timers.target is masked, so that apt-daily, logrotate, phpsessionclean and friends never run from a test
#     systemd against the host's shared state.
#
# Exit status: CMD's status; 125 if the private systemd could not be booted; 128+N if this script got signal N.
# Needs root, util-linux (unshare, nsenter, script) and systemd; scripts/deps.sh checks for them.
set -euo pipefail

readonly SELF="$(readlink -f "${BASH_SOURCE[0]}")"
readonly STATE_BASE="${TMPDIR:-/tmp}"
readonly STATE_PREFIX="ikabud-systemd."
readonly CGROUP_PARENT="ikabud-test"
readonly BOOT_TIMEOUT=30     # seconds until is-system-running must say running or degraded
readonly STOP_TIMEOUT=30     # seconds poweroff may take before the namespace is killed
readonly SYSTEMD_BIN=/lib/systemd/systemd

# The kernel command line of the private systemd. The three tmpfiles masks are critical: without them
# systemd-tmpfiles-setup applies Debian's `D /tmp` rule to the shared filesystem and empties the host's /tmp.
readonly SYSTEMD_ARGS=(
	--system --unit=basic.target
	systemd.mask=systemd-tmpfiles-setup.service
	systemd.mask=systemd-tmpfiles-clean.timer
	systemd.mask=systemd-tmpfiles-clean.service
	systemd.mask=timers.target
	# The host's services share our network namespace: a socket unit of one installed here (Erlang's epmd, with
	# RabbitMQ) fails to bind its port, which the host's copy holds, and would leave the boot "degraded".
	systemd.mask=epmd.socket
)

log() { printf 'with-systemd: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 125; }

usage() {
	cat >&2 <<EOF
usage: $0 CMD [ARGS...]    run CMD inside a private systemd, exit with its status
       $0 --shell          boot a private systemd, print how to enter it, leave it running
       $0 --stop PID       power off a private systemd started by --shell
EOF
	exit 2
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# children PID: direct children of PID, one per line.
children() {
	if [[ -r /proc/$1/task/$1/children ]]; then
		cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true
	else
		pgrep -P "$1" || true # kernels without CONFIG_PROC_CHILDREN
	fi
}
comm() { cat /proc/"$1"/comm 2>/dev/null || true; }
# starttime PID: the process start time in clock ticks, to tell a PID from a later reuse of it.
starttime() { awk '{ sub(/^.*\) /, ""); print $20 }' /proc/"$1"/stat 2>/dev/null || true; }

# cgroup_mounts: "mountpoint fstype superoptions" for each cgroup filesystem mounted in this mount namespace.
cgroup_mounts() {
	awk '{
		for (i = 7; i <= NF && $i != "-"; i++) ;
		if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5, $(i+1), $(i+3)
	}' /proc/self/mountinfo
}

# v1_mount_opts SUPEROPTS: the options that name a v1 hierarchy (its controllers and name=), which must be given
# again to mount the same hierarchy; flags such as rw or xattr are left to the existing superblock.
v1_mount_opts() {
	local opt out="" ctrls
	ctrls=" $(awk 'NR > 1 { printf "%s ", $1 }' /proc/cgroups)"
	for opt in ${1//,/ }; do
		if [[ $opt == name=* || $ctrls == *" $opt "* ]]; then
			out+="${out:+,}$opt"
		fi
	done
	printf '%s' "${out:-none}"
}

# --- inside the launcher (internal entry points, run by this script itself) ---------------------------------

# stage1 STATE: runs under `script`, whose pty is our stdin/stdout. Moves itself into this run's cgroups, so that
# they become the root of the cgroup namespace that unshare creates, then becomes unshare.
stage1() {
	local state="$1" cg mp fstype opts dir f
	cg="$(cat "$state/cgroup")"
	while read -r mp fstype opts; do
		dir="$mp/$CGROUP_PARENT/$cg/payload"
		local try
		for try in 1 2 3 4 5; do # a run that is ending may remove the shared parent under our feet: again
			mkdir -p "$dir" "$mp/$CGROUP_PARENT/$cg/launcher" 2>/dev/null && break
			sleep 0.05
		done
		[[ -d $dir ]] || mkdir -p "$dir" "$mp/$CGROUP_PARENT/$cg/launcher" # fails, with the reason on the console
		if [[ $fstype == cgroup && -e $mp/cpuset.cpus ]]; then
			# a v1 cpuset cgroup takes no tasks until it has CPUs and memory nodes: inherit the parent's
			for f in "$mp/$CGROUP_PARENT" "$mp/$CGROUP_PARENT/$cg" "$dir" "$mp/$CGROUP_PARENT/$cg/launcher"; do
				[[ -n $(cat "$f/cpuset.cpus") ]] || cat "$(dirname "$f")/cpuset.cpus" >"$f/cpuset.cpus"
				[[ -n $(cat "$f/cpuset.mems") ]] || cat "$(dirname "$f")/cpuset.mems" >"$f/cpuset.mems"
			done
		fi
		if [[ $fstype == cgroup2 ]]; then
			# hand every controller we were given down to the payload, so MemoryMax and CPUQuota work inside
			# (best effort: on a hybrid host the v2 hierarchy has no controllers to give)
			for f in "$mp/$CGROUP_PARENT" "$mp/$CGROUP_PARENT/$cg"; do
				local c
				for c in $(cat "$f/cgroup.controllers"); do
					echo "+$c" >"$f/cgroup.subtree_control" 2>/dev/null || true
				done
			done
		fi
		echo $$ >"$dir/cgroup.procs"
	done < <(cgroup_mounts)
	exec unshare --pid --fork --kill-child=SIGKILL --mount --cgroup --mount-proc --propagation private \
		"$SELF" __stage2 "$state"
}

# stage2 STATE: runs as PID 1 of the new namespaces, in the new mount namespace. Prepares the mounts, waits until
# the outside has moved unshare out of the payload cgroup, then becomes systemd.
stage2() {
	local state="$1" mp fstype opts console
	# cgroup filesystems mounted from inside the cgroup namespace show its root as their root
	while read -r mp fstype opts; do
		umount "$mp" 2>/dev/null || true
		if [[ $fstype == cgroup2 ]]; then
			mount -t cgroup2 cgroup2 "$mp"
		else
			mount -t cgroup -o "$(v1_mount_opts "$opts")" cgroup "$mp"
		fi
	done < <(cgroup_mounts | sort -r) # deepest first, in case a hierarchy is mounted under another
	# systemd writes its console output to /dev/console, the host's console; give it our pty instead
	console="$(tty 2>/dev/null)" || console=/dev/null
	mount --bind "$console" /dev/console
	if [[ -d /var/log/journal ]]; then
		mount -t tmpfs -o mode=2755,size=10% ikabud-journal /var/log/journal
		chgrp systemd-journal /var/log/journal 2>/dev/null || true
	fi
	# systemd mounts a fresh /run; MariaDB's socket directory is the host's, and instances (and tests) inside reach
	# the server through it, as on a production host. /run is mounted here, with the socket directory in it, so
	# that systemd keeps it.
	if [[ -d /run/mysqld ]]; then
		mkdir -p "$state/mysqld"
		mount --bind /run/mysqld "$state/mysqld"
		mount -t tmpfs -o mode=0755,nosuid,nodev,size=20% ikabud-run /run
		mkdir -p /run/mysqld
		mount --move "$state/mysqld" /run/mysqld
	fi
	local i
	for ((i = 0; i < 200; i++)); do
		[[ -e $state/go ]] && break
		sleep 0.05
	done
	exec env container=lxc SYSTEMD_COLORS=0 "$SYSTEMD_BIN" "${SYSTEMD_ARGS[@]}"
}

# --- outside ----------------------------------------------------------------------------------------------------

# boot: start a private systemd; sets STATE, SD_PID. On failure prints the console log and exits 125.
boot() {
	[[ $(id -u) == 0 ]] || die "must run as root (it boots a systemd in new namespaces)"
	local t0 launcher unshare_pid="" i st
	t0="$(now)"
	STATE="$(mktemp -d "$STATE_BASE/${STATE_PREFIX}XXXXXXXX")"
	basename "$STATE" >"$STATE/cgroup"
	: >"$STATE/console.log"

	# `script` gives the private systemd a pty for /dev/console and copies what it writes there to console.log.
	# setsid keeps the whole tree out of our process group, so a Ctrl-C reaches CMD and this script (which then
	# powers off cleanly) but not systemd itself.
	SHELL=/bin/bash setsid script --quiet --flush --return \
		--command "exec $(printf '%q' "$SELF") __stage1 $(printf '%q' "$STATE")" \
		"$STATE/console.log" </dev/null >/dev/null 2>&1 &
	launcher=$!
	echo "$launcher $(starttime "$launcher")" >"$STATE/launcher"

	# Find unshare (under script) and its child, the future systemd; move unshare out of the payload cgroup,
	# which must hold only the namespace's own processes (cgroup v2 allows no processes beside delegated children).
	for ((i = 0; i < 200; i++)); do
		local p
		for p in $(children "$launcher"); do
			[[ $(comm "$p") == unshare && -n $(children "$p") ]] && unshare_pid=$p
		done
		[[ -n $unshare_pid ]] && break
		kill -0 "$launcher" 2>/dev/null || break
		sleep 0.02
	done
	[[ -n $unshare_pid ]] || boot_failed "the namespaces were not created"
	local mp fstype opts
	while read -r mp fstype opts; do
		echo "$unshare_pid" >"$mp/$CGROUP_PARENT/$(cat "$STATE/cgroup")/launcher/cgroup.procs" 2>/dev/null || true
	done < <(cgroup_mounts)
	touch "$STATE/go"

	SD_PID=""
	for ((i = 0; i < 200; i++)); do
		local c
		c="$(children "$unshare_pid" | head -n1)"
		if [[ -n $c && $(comm "$c") == systemd ]]; then SD_PID=$c; break; fi
		kill -0 "$unshare_pid" 2>/dev/null || break
		sleep 0.02
	done
	[[ -n $SD_PID ]] || boot_failed "systemd did not start"
	echo "$SD_PID $(starttime "$SD_PID")" >"$STATE/pid"

	st=""
	while :; do
		st="$(nsenter -t "$SD_PID" -a systemctl is-system-running 2>/dev/null)" || true
		[[ $st == running || $st == degraded ]] && break
		kill -0 "$SD_PID" 2>/dev/null || boot_failed "systemd exited during boot"
		[[ $(elapsed "$t0" | cut -d. -f1) -lt $BOOT_TIMEOUT ]] ||
			boot_failed "not booted after ${BOOT_TIMEOUT}s (is-system-running: ${st:-no answer})"
		sleep 0.05
	done
	log "private systemd PID $SD_PID is $st after $(elapsed "$t0")s (state and console log, kept while it runs: $STATE)"
	if [[ $st == degraded ]]; then
		log "failed units (harmless to the tests unless they are ours): $(nsenter -t "$SD_PID" -a systemctl --failed --plain --no-legend 2>/dev/null |
			awk '{ printf "%s ", $1 }')"
	fi
}

boot_failed() {
	log "error: the private systemd did not boot: $1"
	log "last lines of its console ($STATE/console.log, kept):"
	tail -n 40 "$STATE/console.log" | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
	KEEP_STATE=keep
	exit 125 # the EXIT trap powers off what did start
}

# alive PIDFILE: whether the process recorded in PIDFILE ("pid starttime") still runs.
alive() {
	local pid st
	[[ -r $1 ]] || return 1
	read -r pid st <"$1"
	[[ -n $pid && $(starttime "$pid") == "$st" ]]
}

# stop_state STATE [keep]: power the private systemd of STATE off, kill what is left after STOP_TIMEOUT, remove
# its cgroups and (unless keep) the state directory. Idempotent; only touches processes recorded in STATE.
stop_state() {
	local state="$1" keep="${2:-}" pid="" lpid="" i
	if alive "$state/pid"; then
		read -r pid _ <"$state/pid"
		kill_strays "$state" "$pid"
		nsenter -t "$pid" -a systemctl poweroff >/dev/null 2>&1 || true
		for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
			alive "$state/pid" || break
			sleep 0.1
		done
		if alive "$state/pid"; then
			log "systemd PID $pid still running ${STOP_TIMEOUT}s after poweroff; killing its namespace"
			kill -KILL "$pid" 2>/dev/null || true # SIGKILL to a PID namespace's init kills the whole namespace
		fi
	fi
	if alive "$state/launcher"; then
		read -r lpid _ <"$state/launcher"
		for ((i = 0; i < 50; i++)); do
			alive "$state/launcher" || break
			sleep 0.1
		done
		if alive "$state/launcher"; then
			# script is gone only once unshare and systemd are; as a last resort kill the rest of the tree
			local c
			for c in $(children "$lpid"); do
				[[ $(comm "$c") == unshare ]] && kill -KILL "$c" 2>/dev/null || true # --kill-child takes systemd
			done
			kill -KILL "$lpid" 2>/dev/null || true
		fi
	fi
	remove_cgroups "$state"
	[[ -n $keep ]] || rm -rf "$state"
}

# strays STATE PID: the processes of the namespace whose init is PID that its systemd does not manage: CMD and
# whatever CMD left behind, entered through nsenter and so still in a cgroup outside the namespace's own.
strays() {
	local state="$1" sd="$2" d p cg
	[[ -e /proc/$sd/ns/pid ]] || return 0
	cg="/$CGROUP_PARENT/$(cat "$state/cgroup")/payload"
	for d in /proc/[0-9]*; do
		p="${d#/proc/}"
		# -ef compares the namespace inodes without starting a process per entry (this runs every 100 ms)
		[[ $p != "$sd" && $d/ns/pid -ef /proc/$sd/ns/pid ]] 2>/dev/null || continue
		grep -qE "^[0-9]+:(name=systemd)?:$cg(/|\$)" "$d/cgroup" 2>/dev/null || echo "$p"
	done
}

# kill_strays STATE PID: stop the processes systemd does not manage before powering it off. systemd-shutdown
# learns of a process's death from SIGCHLD, which it never gets for these (their parent is nsenter, outside), so it
# would wait out its whole 90 s timeout for each one still running.
kill_strays() {
	local deadline=$((SECONDS + 5))
	local -a left
	mapfile -t left < <(strays "$@")
	((${#left[@]})) || return 0
	kill -TERM "${left[@]}" 2>/dev/null || true
	while ((SECONDS < deadline)); do
		sleep 0.1
		mapfile -t left < <(strays "$@")
		((${#left[@]})) || return 0
	done
	log "killing processes that ignored SIGTERM for 5s: ${left[*]}"
	kill -KILL "${left[@]}" 2>/dev/null || true
}

# remove_cgroups STATE: remove this run's (now empty) cgroup subtree in every hierarchy.
remove_cgroups() {
	local cg mp fstype opts top i
	[[ -r $1/cgroup ]] || return 0
	cg="$(cat "$1/cgroup")"
	[[ -n $cg ]] || return 0
	while read -r mp fstype opts; do
		top="$mp/$CGROUP_PARENT/$cg"
		[[ -d $top ]] || continue
		for ((i = 0; i < 20; i++)); do # the last processes may take a moment to be reaped
			find "$top" -depth -type d -exec rmdir {} + 2>/dev/null && break
			sleep 0.1
		done
		[[ -d $top ]] && log "warning: could not remove cgroup $top"
		rmdir "$mp/$CGROUP_PARENT" 2>/dev/null || true # shared by concurrent runs: only when empty
	done < <(cgroup_mounts)
}

# watchdog STATE OWNER OWNER_START: powers the private systemd off if the owning script dies without doing so
# (SIGKILL, a crashed CI runner), so that no test systemd outlives its run.
watchdog() {
	local state="$1" owner="$2" owner_start="$3"
	while [[ -d $state && $(starttime "$owner") == "$owner_start" ]]; do
		sleep 1
	done
	[[ -d $state && ! -e $state/shell ]] && stop_state "$state"
	exit 0
}

# run CMD...: the default mode.
run() {
	local rc=0 cmd_pid v name
	local -a envs=(IKABUD_TEST_SYSTEMD=1 "PATH=$PATH" "HOME=${HOME:-/root}")
	arm_cleanup
	boot
	setsid "$SELF" __watchdog "$STATE" $$ "$(starttime $$)" </dev/null >/dev/null 2>&1 &

	# Go's directories are resolved here and passed explicitly, so that CMD inside builds with the same caches.
	if command -v go >/dev/null 2>&1; then
		for name in GOPATH GOCACHE GOMODCACHE; do
			v="$(go env "$name" 2>/dev/null)" || v=""
			[[ -z $v ]] || envs+=("$name=$v")
		done
	fi
	# CMD runs in the background with our stdin (a plain `&` would give it /dev/null), so that a signal to this
	# script is handled at once instead of after CMD ends. Variables that tie a process to the host's service
	# manager are dropped: inside, they would point at sockets of the wrong systemd.
	if [[ -e /dev/fd/0 ]]; then exec 3<&0; else exec 3</dev/null; fi # CI may start us with stdin closed
	nsenter -t "$SD_PID" -a --wd="$PWD" \
		env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u INVOCATION_ID -u JOURNAL_STREAM \
		-u WATCHDOG_PID -u WATCHDOG_USEC -u DBUS_SYSTEM_BUS_ADDRESS "${envs[@]}" \
		"$@" <&3 3<&- &
	cmd_pid=$!
	wait "$cmd_pid" || rc=$?
	exit "$rc"
}

# arm_cleanup: power off and clean up whatever boot started, whichever way this script ends.
arm_cleanup() {
	STATE=""
	KEEP_STATE=""
	trap 'cleanup' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ -n ${STATE:-} && -d $STATE ]]; then
		stop_state "$STATE" "$KEEP_STATE"
	fi
	exit "$rc"
}

# shell: boot and leave it running.
shell() {
	arm_cleanup
	boot
	trap - EXIT INT TERM HUP
	touch "$STATE/shell"
	cat <<EOF
private systemd PID: $SD_PID
enter it:  nsenter -t $SD_PID -a --wd="$PWD" env IKABUD_TEST_SYSTEMD=1 bash -l
stop it:   $0 --stop $SD_PID
EOF
}

# stop PID: only a systemd this script started (one with a state directory) is touched.
stop() {
	local pid="$1" state="" d spid
	[[ $pid =~ ^[0-9]+$ ]] || usage
	for d in "$STATE_BASE/$STATE_PREFIX"*/; do
		[[ -r $d/pid ]] || continue
		read -r spid _ <"$d/pid"
		[[ $spid == "$pid" ]] && state="${d%/}"
	done
	[[ -n $state ]] || die "PID $pid is not a private systemd started by $0 (no state under $STATE_BASE); not touching it"
	local t0
	t0="$(now)"
	stop_state "$state"
	log "private systemd PID $pid stopped in $(elapsed "$t0")s"
}

case "${1:-}" in
__stage1) stage1 "$2" ;;
__stage2) stage2 "$2" ;;
__watchdog) watchdog "$2" "$3" "$4" ;;
--shell) [[ $# == 1 ]] || usage; shell ;;
--stop) [[ $# == 2 ]] || usage; stop "$2" ;;
"" | -h | --help) usage ;;
*) run "$@" ;;
esac
