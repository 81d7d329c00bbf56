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
[[ -n $has_packages ]] || args+=(./...)

exec scripts/with-systemd.sh go test -count=1 -timeout 30m "${args[@]}"
