# Palisade — see README.md.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TESTFLAGS ?= -race -timeout 20m
FUZZTIME ?= 30s

.PHONY: all build run test test-short deps bench bench-tcp bench-tcp-pinned bench-tcp-cubic bench-http bench-http-pinned bench-failover bench-synflood fuzz generate lint docs clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/palisade ./cmd/palisade
	$(GO) build -trimpath -o $(BIN)/demo-backend ./test/cmd/demo-backend

# Two demo backends and palisade on loopback, in the foreground. Ctrl-C stops all.
run: build
	@./test/demo.sh

# Installs what the tests need (Debian packages, as root), then runs every test;
# proxy/l7 runs twice: on the event-loop path (default) and the goroutine path.
test: deps
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...
	L7_GOROUTINE=1 $(GO) test $(TESTFLAGS) -count=1 ./proxy/l7/ # -count=1: read at init, the variable escapes the test cache

test-short:
	$(GO) test -short ./...

deps:
	@bash test/install-deps.sh

bench: bench-tcp bench-tcp-pinned bench-http bench-http-pinned

bench-tcp: build
	@bash test/install-deps.sh bench
	$(GO) run ./test/bench/tcp -palisade $(BIN)/palisade

# The same with the proxy under test alone on CPU 0 and nginx, wrk and the
# bulk client on CPU 1 (the idle-memory test does not depend on it: skipped);
# then keep-alive behind 4 connections, where the load waits on the proxy.
bench-tcp-pinned: build
	@bash test/install-deps.sh bench
	@if [ "$$(nproc)" -lt 2 ]; then echo "bench-tcp-pinned: needs 2 CPUs, skipped"; else \
	  $(GO) run ./test/bench/tcp -palisade $(BIN)/palisade -pin 0:1 -idle 0 && \
	  $(GO) run ./test/bench/tcp -palisade $(BIN)/palisade -pin 0:1 -idle 0 -only keepalive -conns 4 -threads 1; fi

# Both again under cubic, Linux's default TCP congestion control, in a network
# namespace of the bench's own (root), whatever the host uses (see README).
bench-tcp-cubic: build
	@bash test/install-deps.sh bench
	$(GO) run ./test/bench/tcp -palisade $(BIN)/palisade -cc cubic
	@if [ "$$(nproc)" -lt 2 ]; then echo "bench-tcp-cubic: pinned run needs 2 CPUs, skipped"; else \
	  $(GO) run ./test/bench/tcp -palisade $(BIN)/palisade -cc cubic -pin 0:1 -idle 0; fi

bench-http: build
	@bash test/install-deps.sh bench
	PALISADE_CMD='exec $(CURDIR)/$(BIN)/palisade run -c $$CONF' bash test/bench/http/run.sh
	$(GO) run ./test/bench/http/idlemem -palisade $(BIN)/palisade

# The same with each proxy alone on CPU 0 and nginx and wrk on CPU 1.
bench-http-pinned: build
	@bash test/install-deps.sh bench
	@if [ "$$(nproc)" -lt 2 ]; then echo "bench-http-pinned: needs 2 CPUs, skipped"; else \
	  PIN=0:1 PALISADE_CMD='exec $(CURDIR)/$(BIN)/palisade run -c $$CONF' bash test/bench/http/run.sh; fi

bench-failover:
	@bash test/install-deps.sh
	$(GO) run ./test/vrrp/failoverbench -runs 5 -adverts 100ms,1s

bench-synflood:
	@bash test/install-deps.sh
	$(GO) test -run 'TestBenchSynflood' -v -timeout 30m ./test/synflood/ -args -bench-synflood

# Runs each fuzz target for FUZZTIME (the seed corpora in testdata/ also run in `make test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Regenerates the committed bpf2go output (needs clang) and the README config reference.
generate:
	$(GO) generate ./...
	$(MAKE) docs

docs:
	$(GO) run ./internal/config/cmd/gendoc README.md

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
