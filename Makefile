# canaryd — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing first (Debian packages, Kubernetes binaries
# built from Go modules, kwok, helm), caching builds under ~/.cache/canaryd.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.Version=$(VERSION)
FUZZTIME  ?= 10s
TESTFLAGS ?=

.PHONY: all build bootstrap test unit e2e fuzz lint demo cluster-up cluster-down clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/canaryd ./cmd/canaryd

bootstrap:
	./test/bootstrap.sh

# Everything CI runs: lint, unit tests, the harness, the mesh simulator,
# Prometheus integration, the e2e suite on the local control plane, and a
# bounded fuzz run of every parser.
test: bootstrap lint
	$(GO) test -count=1 -timeout 30m $(TESTFLAGS) ./...
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 -short ./rollout/... ./analysis/... ./kube/...

e2e: bootstrap
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSpec$$' -fuzztime $(FUZZTIME) ./rollout
	@for f in $$($(GO) test -list '^Fuzz' ./analysis | grep '^Fuzz'); do \
		echo "fuzz $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./analysis || exit 1; \
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
