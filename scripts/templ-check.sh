#!/usr/bin/env bash
# templ-check.sh: fails when the committed *_templ.go files are not what the .templ files generate. Generates into a
# copy of web/templates, so the work tree is left alone, and compares.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) export PATH="/usr/local/go/bin:$PATH" ;;
esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -a web/templates "$tmp/templates"
find "$tmp/templates" -name '*_templ.go' -delete
go tool templ generate -path "$tmp/templates" >/dev/null 2>&1 || go tool templ generate -path "$tmp/templates"
if ! diff -r -x '*.templ' -x '*_test.go' -x 'helpers.go' web/templates "$tmp/templates" >"$tmp/diff"; then
	cat "$tmp/diff" >&2
	echo "templ-check: the generated templ code is stale: run \`make templ\` and commit the *_templ.go files" >&2
	exit 1
fi
echo "templ-check: generated templ code is current"
