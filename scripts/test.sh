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

args=("$@")
has_packages=""
for a in "$@"; do
	case "$a" in
	./* | ../* | *... | github.com/ikabud/panel*) has_packages=1 ;;
	esac
done
if [[ -n $has_packages ]]; then
	exec scripts/with-systemd.sh go test -count=1 -timeout 30m "${args[@]}"
fi

# The whole suite. The built-in supervisor is for hosts where PID 1 is not systemd, and its package runs on such a
# host: this one, outside the private systemd. Under a systemd PID 1 on the cgroup v1 layout, systemd moves every
# process it does not manage back to the root of the v1 hierarchies whenever it realizes its own cgroups, which
# takes the supervisor's children out of theirs. Everything else runs inside the private systemd.
supervise=github.com/ikabud/panel/internal/procmgr/supervise
mapfile -t inside < <(go list ./... | grep -vx "$supervise")
status=0
scripts/with-systemd.sh go test -count=1 -timeout 30m "${args[@]}" "${inside[@]}" || status=$?
go test -count=1 -timeout 15m "${args[@]}" "$supervise" || status=$?
exit "$status"
