# Quick start: `make run` (demo upstreams + gateway on gateway.json) and `make test` (every test).
# Both install what they need from Debian first, so a fresh machine with Swift needs nothing else.

SWIFT  ?= swift
CONFIG ?= gateway.json
BIN    := $(shell $(SWIFT) build --show-bin-path 2>/dev/null || echo .build/debug)

# Debian packages: curl drives the multi-gigabyte streaming tests and the README walk-through;
# the benchmark compares against NGINX under wrk load, pinned to cores with taskset.
RUN_PACKAGES   := curl
TEST_PACKAGES  := curl
BENCH_PACKAGES := nginx wrk python3 procps util-linux
BENCH_ARGS     ?=

.PHONY: all build run test check bench deps-run deps-test clean

all: build

build:
	$(SWIFT) build

deps-run:
	@scripts/ensure-packages.sh $(RUN_PACKAGES)

deps-test:
	@scripts/ensure-packages.sh $(TEST_PACKAGES)

run: deps-run build
	BIN=$(BIN) scripts/run-demo.sh $(CONFIG)

test: deps-test
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Gateway vs NGINX vs the bare upstream; writes bench/RESULTS.md (about 7 minutes).
bench:
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)
	$(SWIFT) build -c release --product gateway
	python3 bench/run.py $(BENCH_ARGS)

check: build
	$(BIN)/gateway check --config $(CONFIG)

clean:
	rm -rf .build
