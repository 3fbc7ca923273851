#!/bin/sh
# Runs each fuzz target for SECONDS: first replaying every saved regression input (any crash fails at
# once), then fuzzing a working copy of its seed corpus. Usage: scripts/fuzz.sh SECONDS TARGET...
set -eu
seconds=$1
shift
bin=.build-fuzz/release
mkdir -p .build-fuzz/artifacts
for target in "$@"; do
    name=${target#fuzz-}
    regressions=Fuzz/regressions/$name
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "== $target: replaying $regressions"
        "$bin/$target" -runs=0 "$regressions"/* >/dev/null 2>.build-fuzz/$target-replay.log || {
            cat .build-fuzz/$target-replay.log; echo "$target: a saved regression input crashes again"; exit 1; }
    fi
    work=.build-fuzz/corpus-$name
    mkdir -p "$work"
    cp Fuzz/corpus/$name/* "$work"/ 2>/dev/null || true
    echo "== $target: fuzzing for ${seconds}s"
    "$bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=.build-fuzz/artifacts/$name- "$work" 2>.build-fuzz/$target.log || {
        tail -40 .build-fuzz/$target.log; echo "$target found a crash: see .build-fuzz/artifacts/"; exit 1; }
    grep -E "^stat::number_of_executed_units|^Done" .build-fuzz/$target.log || true
done
