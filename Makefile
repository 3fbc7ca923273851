# Quick start: `make run` (demo upstreams + gateway on gateway.json) and `make test` (every test).
# Both install what they need from Debian first, so a fresh machine with Swift needs nothing else.

SWIFT  ?= swift
CONFIG ?= gateway.json
BIN    := $(shell $(SWIFT) build --show-bin-path 2>/dev/null || echo .build/debug)

# Debian packages: libhiredis-dev to build (the Redis client's protocol codec), zlib1g-dev, libbrotli-dev and libzstd-dev (gzip, br and zstd responses), libmaxminddb-dev (geoip) and
# libjemalloc-dev (release builds allocate through jemalloc); redis-server for shared rate limits (make run starts one when
# gateway.json needs it, the tests start their own); curl drives the multi-gigabyte streaming tests and the
# README walk-through; python3 lists a config's included files for make run and runs the test and bench helpers;
# the benchmark compares against NGINX under wrk load, pinned to cores with taskset.
BUILD_PACKAGES := libhiredis-dev libjemalloc-dev zlib1g-dev libbrotli-dev libzstd-dev libcrypt-dev libmaxminddb-dev
RUN_PACKAGES   := $(BUILD_PACKAGES) curl redis-server openssl python3
TEST_PACKAGES  := $(BUILD_PACKAGES) curl redis-server python3 openssl nghttp2-client pebble libmaxmind-db-writer-perl dnsmasq-base bind9 bind9-dnsutils python3-botocore
BENCH_PACKAGES := $(BUILD_PACKAGES) nginx wrk nghttp2-client python3 procps util-linux redis-server openssl
BENCH_ARGS     ?=

.PHONY: all build run test check bench soak fuzz fuzz-smoke sanitize deps-build deps-run deps-test clean

all: build

build: deps-build
	$(SWIFT) build

deps-build:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)

deps-run:
	@scripts/ensure-packages.sh $(RUN_PACKAGES)

deps-test:
	@scripts/ensure-packages.sh $(TEST_PACKAGES)

run: deps-run build
	BIN=$(BIN) scripts/run-demo.sh $(CONFIG)

# Tests run one at a time: many assert network behaviour against real clocks (read and header timeouts,
# breakers opening, a connection closing after an error), and in parallel on 2 cores the multi-gigabyte
# streaming tests starved the others past their margins (a third of the runs or more failed on 2026-12-06;
# none of 6 serial runs did). Serial takes about a minute instead of 20 s.
test: deps-test
	python3 scripts/check-test-macros.py
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel
	$(MAKE) fuzz-smoke

# libFuzzer targets (Fuzz/): the config decoder, and the request head parser + path normaliser + body
# decoder. Built with their own scratch path (every module instrumented). `make fuzz` runs each for
# FUZZ_SECONDS on a working copy of Fuzz/corpus; a crash leaves its input in .build-fuzz/artifacts/ (turn
# it into a test and keep it under Fuzz/regressions/). `fuzz-smoke` (part of make test) builds them,
# replays every regression input and fuzzes each for a few seconds.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := fuzz-config fuzz-http
FUZZ_BUILD    = GATEWAY_FUZZ=1 $(SWIFT) build --scratch-path .build-fuzz -c release \
                -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library

fuzz:
	@for target in $(FUZZ_TARGETS); do $(FUZZ_BUILD) --product $$target || exit 1; done
	@scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	@for target in $(FUZZ_TARGETS); do $(FUZZ_BUILD) --product $$target || exit 1; done
	@scripts/fuzz.sh 5 $(FUZZ_TARGETS)

# The integration suite under ThreadSanitizer and AddressSanitizer/LeakSanitizer (SANITIZERS="thread address"),
# each in its own scratch path, run serially with a time scale for the sanitizers' slowdown; any report fails
# it. About 25 minutes from scratch on 2 cores (mostly the two instrumented builds).
SANITIZERS ?= thread address
sanitize: deps-test
	scripts/sanitize.sh $(SANITIZERS)

# Gateway vs NGINX vs the bare upstream; writes bench/RESULTS.md (about 14 minutes).
bench:
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)
	$(SWIFT) build -c release --product gateway
	python3 bench/run.py $(BENCH_ARGS)

# Ten minutes of steady mixed load; passes when nothing failed and RSS and descriptors stayed flat.
soak:
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)
	$(SWIFT) build -c release --product gateway
	python3 bench/soak.py $(SOAK_ARGS)

check: build
	$(BIN)/gateway check --config $(CONFIG)

clean:
	rm -rf .build
