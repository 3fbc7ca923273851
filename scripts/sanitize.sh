#!/bin/sh
# Runs the integration suite (real sockets, real child processes) under each sanitizer given
# (default: thread address): builds the package and its tests instrumented in .build-<sanitizer>, then runs
# the tests one at a time with the time scale sanitized code needs (.build-tsan, .build-asan). Child processes (the gateway binary,
# the demo upstream) are built the same way and inherit the options, so they are checked too.
# Any ThreadSanitizer report, AddressSanitizer error or LeakSanitizer leak fails the run.
# Usage: scripts/sanitize.sh [thread] [address]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sanitizers=${*:-thread address}
# A scale given by the caller applies to every sanitizer; otherwise each gets its own default.
given_scale=${GATEWAY_TEST_TIME_SCALE:-}
for sanitizer in $sanitizers; do
    case $sanitizer in
        thread) scratch=.build-tsan ;;
        address) scratch=.build-asan ;;
        *) echo "unknown sanitizer $sanitizer (thread or address)"; exit 2 ;;
    esac
    log=$scratch/sanitize.log
    echo "== $sanitizer: building (first time: ~10 minutes)"
    swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"
    export GATEWAY_TEST_SANITIZER=$sanitizer
    case $sanitizer in
        thread)
            export GATEWAY_TEST_TIME_SCALE=${given_scale:-4}
            # exitcode: a report fails the process that made it even when it carries on.
            export TSAN_OPTIONS="halt_on_error=0:exitcode=66:suppressions=$here/sanitizers/tsan.supp"
            ;;
        address)
            export GATEWAY_TEST_TIME_SCALE=${given_scale:-3}
            # Every process writes its reports to $reports. The gateway and demo processes the tests start
            # check for leaks when they exit; the test process itself does not (docs/threat-model.md: LeakSanitizer
            # misreads Swift's spare-bit-tagged enum payloads and Foundation's Process objects in the harness).
            reports=$PWD/$scratch/sanitizer-reports
            rm -rf "$reports"
            mkdir -p "$reports"
            export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$reports/asan"
            export GATEWAY_TEST_CHILD_ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$reports/asan"
            export LSAN_OPTIONS="suppressions=$here/sanitizers/lsan.supp:print_suppressions=0"
            ;;
    esac
    echo "== $sanitizer: running the integration suite (time scale $GATEWAY_TEST_TIME_SCALE)"
    status=0
    swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" --no-parallel \
        --filter GatewayIntegrationTests >"$log" 2>&1 || status=$?
    grep -E "Test run with|✘" "$log" | tail -40 || true
    if [ -n "${reports:-}" ] && [ -n "$(ls -A "$reports")" ]; then
        for report in "$reports"/*; do echo "-- $report"; head -60 "$report"; done
        echo "== $sanitizer: sanitizer reports above"
        exit 1
    fi
    if grep -qE "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$log"; then
        grep -E -A30 "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$log" | head -120
        echo "== $sanitizer: sanitizer reports above (full log: $log)"
        exit 1
    fi
    if [ "$status" -ne 0 ]; then
        echo "== $sanitizer: tests failed (exit $status; full log: $log)"
        exit 1
    fi
    echo "== $sanitizer: clean"
done
