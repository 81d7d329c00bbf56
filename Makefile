# Entry points for people and CI. `make test` is what CI runs (.ci/run); see scripts/ for what each step does.

# Go lives in /usr/local/go/bin on these machines, which a non-login shell may not have on its PATH.
ifeq ($(filter /usr/local/go/bin,$(subst :, ,$(PATH))),)
export PATH := /usr/local/go/bin:$(PATH)
endif

GO ?= go
# extra arguments for go test, e.g. make test ARGS='-run TestStart ./internal/procmgr/...'
ARGS ?=

.DEFAULT_GOAL := build
.PHONY: build templ test bench run fmt vet templ-check

build: templ
	$(GO) build -o bin/panel ./cmd/panel

# Regenerates the Go code of the templ components (committed beside them).
templ:
	$(GO) tool templ generate -path web/templates

test:
	scripts/test.sh $(ARGS)

# The engine's and the web panel's figures, each beside its floor (the same work without the panel, same run): the
# systemd backend against a real panel serve with 200 instances running, inside a private systemd (with the websocket
# figures); then the built-in supervisor's, with Debian's supervisord running the same masters beside it, 1,000
# instances brought back after a simulated reboot and the daemon's memory while 100 of them log; then the package
# benchmarks (create, kill, first and second crash; the dashboard for 1,000 instances; the live hub's fan-out, log
# flood and idle-socket memory). It prints the load average at its start and end.
bench:
	scripts/deps.sh --bench
	scripts/with-systemd.sh $(GO) run ./cmd/panel-bench
	$(GO) run ./cmd/panel-bench --backend supervise
	scripts/with-systemd.sh $(GO) run ./cmd/panel-bench --sites
	$(GO) run ./cmd/panel-bench --backend supervise --sites
	$(GO) test -run '^$$' -bench . -benchtime 50x ./internal/procmgr/supervise/
	$(GO) test -run '^$$' -bench 'Dashboard1000' -benchtime 50x ./internal/web/ | grep -E '^(Benchmark|ok|FAIL)'
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/web/live/ | grep -E '^(Benchmark|ok|FAIL)'

# Installs PHP-FPM when missing, builds, and runs panel serve with its defaults (scripts/run.sh).
run:
	scripts/run.sh

fmt:
	find . -path ./.git -prune -o -path '*/testdata' -prune -o -path ./vendor -prune -o \
		-name '*.go' -type f -print0 | xargs -0 -r gofmt -w

vet:
	$(GO) vet ./...

# Fails when the committed templ output differs from what the .templ files generate (scripts/templ-check.sh).
templ-check:
	scripts/templ-check.sh
