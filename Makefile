# The README shows these targets; CI runs `make test` through .ci/run.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X github.com/wagate/wagate/internal/app.version=$(VERSION) \
           -X github.com/wagate/wagate/internal/app.commit=$(COMMIT) \
           -X github.com/wagate/wagate/internal/app.date=$(DATE)
STATICCHECK_VERSION ?= v0.8.2

.PHONY: run build test lint bench

## run: start wagate on :8080 with embedded SQLite in ./data
run:
	$(GO) run ./cmd/wagate serve

## build: a static binary in bin/wagate (the same flags the Dockerfile uses)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/wagate ./cmd/wagate

## test: go vet and every test on SQLite and a throwaway PostgreSQL
test:
	scripts/test.sh

## lint: gofmt, go vet and staticcheck
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## reliability: the reliability suite at full size (a 20,000-event burst through a SIGKILL, receiver and PostgreSQL outages, a hung receiver, tenant isolation), then each fuzz target for 30 s (FUZZTIME=...)
.PHONY: reliability
reliability:
	WAGATE_RELIABILITY_EVENTS=$${WAGATE_RELIABILITY_EVENTS:-20000} scripts/test.sh ./internal/reliability/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZTIME),30s) ./internal/reliability/
	$(GO) test -run '^$$' -fuzz '^FuzzSandboxInject$$' -fuzztime $(or $(FUZZTIME),30s) ./internal/reliability/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(or $(FUZZTIME),30s) ./webhooksig/

## bench: the Go benchmarks of the hot paths
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: load
## load: the end-to-end load test against a wagate it spawns on SQLite (docs/benchmarks.md);
## LOAD_ARGS adds flags, e.g. make load LOAD_ARGS="--rate 1000 --duration 30s"
load:
	$(GO) run ./cmd/wagate-load $(LOAD_ARGS)
