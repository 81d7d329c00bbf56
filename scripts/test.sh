#!/usr/bin/env bash
# test.sh: the whole check, as CI runs it (`make test`): the real parts, gofmt, go vet, then go test inside a
# private systemd (scripts/with-systemd.sh).
#
#   scripts/test.sh                          go test -count=1 -timeout 30m ./...
#   scripts/test.sh -run Foo ./internal/...  the arguments are passed to go test; when none of them names
#                                            packages (./x, ../x, x/..., or a github.com/ikabud/panel path),
#                                            ./... is tested
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) export PATH="/usr/local/go/bin:$PATH" ;;
esac

scripts/deps.sh

# gofmt: every Go file we own (not testdata, which may hold deliberately odd Go)
unformatted="$(find . -path ./.git -prune -o -path '*/testdata' -prune -o -path ./vendor -prune -o \
	-name '*.go' -type f -print0 | xargs -0 -r gofmt -l)"
if [[ -n $unformatted ]]; then
	printf 'test: these files are not gofmt-formatted (run `make fmt`):\n%s\n' "$unformatted" >&2
	exit 1
fi

go vet ./...
scripts/templ-check.sh

args=("$@")
has_packages=""
for a in "$@"; do
	case "$a" in
	./* | ../* | *... | github.com/ikabud/panel*) has_packages=1 ;;
	esac
done

# go test -json through scripts/testsum.go: the usual package lines and failing tests' output, and at the end one
# line counting every test run ("N passed, N failed, N skipped").
counts="$(mktemp)"
trap 'rm -f "$counts"' EXIT
export TESTSUM_FILE="$counts"
go build -o /dev/null scripts/testsum.go
summed() {
	"$@" 2>&1 | go run scripts/testsum.go
	local rc=("${PIPESTATUS[@]}")
	return "${rc[0]}"
}
closing() {
	awk '{p += $1; f += $2; s += $3} END {printf "%d passed, %d failed, %d skipped\n", p, f, s}' "$counts"
}

status=0
if [[ -n $has_packages ]]; then
	summed scripts/with-systemd.sh go test -json -count=1 -timeout 30m "${args[@]}" || status=$?
	closing
	exit "$status"
fi

# The whole suite. The built-in supervisor is for hosts where PID 1 is not systemd, and its package runs on such a
# host: this one, outside the private systemd. Under a systemd PID 1 on the cgroup v1 layout, systemd moves every
# process it does not manage back to the root of the v1 hierarchies whenever it realizes its own cgroups, which
# takes the supervisor's children out of theirs. Everything else runs inside the private systemd.
# The systemd backend's package runs alone in a private systemd of its own: TestNoDaemonReloadPerCreate counts
# systemd's reloads, and every other package's tests that start a panel install a template unit, which reloads it.
supervise=github.com/ikabud/panel/internal/procmgr/supervise
sdbackend=github.com/ikabud/panel/internal/procmgr/systemd
mapfile -t inside < <(go list ./... | grep -vx -e "$supervise" -e "$sdbackend")
summed scripts/with-systemd.sh go test -json -count=1 -timeout 30m "${args[@]}" "$sdbackend" || status=$?
summed scripts/with-systemd.sh go test -json -count=1 -timeout 30m "${args[@]}" "${inside[@]}" || status=$?
summed go test -json -count=1 -timeout 15m "${args[@]}" "$supervise" || status=$?
closing
exit "$status"
