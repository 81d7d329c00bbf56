# Entry points for people and CI. `make test` is what CI runs (.ci/run); see scripts/ for what each step does.

# Go lives in /usr/local/go/bin on these machines, which a non-login shell may not have on its PATH.
ifeq ($(filter /usr/local/go/bin,$(subst :, ,$(PATH))),)
export PATH := /usr/local/go/bin:$(PATH)
endif

GO ?= go
# extra arguments for go test, e.g. make test ARGS='-run TestStart ./internal/procmgr/...'
ARGS ?=

.DEFAULT_GOAL := build
.PHONY: build test bench run fmt vet templ-check

build:
	$(GO) build -o bin/panel ./cmd/panel

test:
	scripts/test.sh $(ARGS)

# The engine's figures: the systemd backend against a real panel serve with 200 instances running, inside a private
# systemd; then the built-in supervisor's (create, kill -> event, crash -> ping), with p50 and p90 per figure.
bench:
	scripts/with-systemd.sh $(GO) run ./cmd/panel-bench
	$(GO) run ./cmd/panel-bench --backend supervise
	$(GO) test -run '^$$' -bench . -benchtime 50x ./internal/procmgr/supervise/

# Installs PHP-FPM when missing, builds, and runs panel serve with its defaults (scripts/run.sh).
run:
	scripts/run.sh

fmt:
	find . -path ./.git -prune -o -path '*/testdata' -prune -o -path ./vendor -prune -o \
		-name '*.go' -type f -print0 | xargs -0 -r gofmt -w

vet:
	$(GO) vet ./...

# Placeholder: will regenerate the templ components and fail if the committed output differs.
templ-check:
	@:
