# canaryd — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing first (Debian packages, Kubernetes binaries
# built from Go modules, kwok, helm), caching builds under ~/.cache/canaryd.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.Version=$(VERSION)
FUZZTIME  ?= 10s
TESTFLAGS ?=

.PHONY: all build bootstrap test unit e2e chaos bench vuln vuln-if-reachable fuzz lint demo cluster-up cluster-down clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/canaryd ./cmd/canaryd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kubectl-canary ./cmd/kubectl-canary

bootstrap:
	./test/bootstrap.sh

# Everything CI runs: lint, unit tests, the harness, the mesh simulator,
# Prometheus integration, the e2e suite on the local control plane, and a
# bounded fuzz run of every parser.
test: bootstrap lint
	$(GO) test -count=1 -timeout 30m $(TESTFLAGS) ./...
	$(MAKE) fuzz
	$(MAKE) vuln-if-reachable

unit:
	$(GO) test -count=1 -short ./rollout/... ./analysis/... ./kube/...

e2e: bootstrap
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/...

# The full chaos run (the short one is part of `go test ./...`): 50 rollouts
# under SIGKILL, a 5 minute Prometheus outage, API faults, user edits, hostile
# annotations. Prints the table; fails on any violation. Built and run as a
# binary so the table shows without -v's noise.
chaos: bootstrap
	$(GO) test -c -o bin/chaos.test ./test/chaos
	cd test/chaos && ../../bin/chaos.test -test.timeout 90m -full

# The benchmark (issue 8): how fast a bad canary loses its traffic, against
# Wald's information limit, and one canaryd managing 100 to 2,000 and more
# Deployments. Takes 30–40 minutes on 2 cores; writes
# test/bench/report/REPORT.md with PNG plots and pprof profiles. Its smoke
# (N = 50, 3 trials of each scenario) runs in `make test`. Then what one
# check costs Prometheus in CPU (analysis, about 2 minutes).
bench: bootstrap
	CANARYD_BENCH_FULL=1 $(GO) test -count=1 -timeout 90m -v -run '^TestBench$$' ./test/bench
	$(GO) test -count=1 -timeout 15m -run '^$$' -bench PrometheusCostPerCheck -benchtime 400x -count 3 ./analysis

# govulncheck needs its vulnerability database: VULN_DB is vuln.go.dev, or a
# file:// mirror of it where that host is unreachable.
GOVULNCHECK_VERSION := v1.9.0
GOVULNCHECK := $(or $(CANARYD_CACHE),$(HOME)/.cache/canaryd)/govulncheck-$(GOVULNCHECK_VERSION)/bin/govulncheck
VULN_DB ?= https://vuln.go.dev

$(GOVULNCHECK):
	GOBIN=$(dir $(GOVULNCHECK)) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

vuln: $(GOVULNCHECK)
	$(GOVULNCHECK) -db $(VULN_DB) ./...

# make test runs govulncheck where its database answers, and says plainly
# when it does not (the test machines reach only the Go module proxy).
vuln-if-reachable:
	@if curl -sf --max-time 10 -o /dev/null $(VULN_DB)/index/db.json; then $(MAKE) vuln; \
	else echo "vuln: NOT RUN: the vulnerability database $(VULN_DB) is unreachable from this machine; run make vuln where it is, or VULN_DB=file:///path/to/mirror"; fi

fuzz:
	@for pkg in ./rollout ./analysis; do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

GOLANGCI_VERSION := v2.15.0
GOLANGCI := $(or $(CANARYD_CACHE),$(HOME)/.cache/canaryd)/golangci-lint-$(GOLANGCI_VERSION)/bin/golangci-lint

$(GOLANGCI):
	GOBIN=$(dir $(GOLANGCI)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

lint: $(GOLANGCI)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI) run ./...

# Built, then run, so that the demo's own exit code (0, 1, 130 on Ctrl-C)
# reaches the shell unchanged; `go run` would turn any interruption into 1.
demo: bootstrap
	$(GO) build -o bin/demo ./test/demo
	./bin/demo

cluster-up: bootstrap
	$(GO) run ./test/cluster/cmd/cluster up --prometheus

cluster-down:
	$(GO) run ./test/cluster/cmd/cluster down

clean:
	rm -rf bin .cache
