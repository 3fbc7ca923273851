#!/usr/bin/env bash
# Profiles the release gateway under the bench's 1 KB GET load and prints where its CPU time goes.
# perf (Debian linux-perf) samples with the software cpu-clock event, which works even where hardware
# counters are not exposed (as in most VMs). Usage: bench/profile.sh [seconds] [path]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
connections="${CONNECTIONS:-50}"
path="${2:-/1k}"
scripts/ensure-packages.sh libhiredis-dev libjemalloc-dev zlib1g-dev libbrotli-dev libcrypt-dev nginx wrk linux-perf redis-server openssl >/dev/null
swift build -c release --product gateway >/dev/null
work=bench/.work
mkdir -p "$work/www"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
head -c 65536 /dev/zero | tr '\0' y > "$work/www/64k"
sed -e "s|@DIR@|$PWD/$work|g" -e "s|@UPSTREAM_PORT@|19001|g" bench/templates/nginx-upstream.conf > "$work/upstream.conf"
# The template's TLS listener and JWT route need a certificate and the JWT secret (as bench/run.py makes them).
mkdir -p "$work/tls"
[ -f "$work/tls/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" -days 2 -subj /CN=127.0.0.1 2>/dev/null
export BENCH_JWT_SECRET=bench-secret-0123456789abcdef0123456789abcdef
sed -e "s|@DIR@|$PWD/$work|g" -e "s|@UPSTREAM_PORT@|19001|g" -e "s|@GATEWAY_PORT@|18080|g" -e "s|@REDIS_PORT@|16379|g" \
  -e "s|@GATEWAY_TLS_PORT@|18443|g" bench/templates/gateway.json > "$work/gateway.json"
# The template's /limited route keeps its counters in Redis (profile it with path /limited/1k).
taskset -c 1 redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no > /dev/null &
redis=$!
taskset -c 1 nginx -c "$PWD/$work/upstream.conf" -p "$PWD/$work" &
upstream=$!
taskset -c 0 .build/release/gateway run --config "$work/gateway.json" > "$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill $gateway $upstream $redis 2>/dev/null || true' EXIT
sleep 1
taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:18080$path" > /dev/null
taskset -c 1 wrk -t1 -c"$connections" -d"$((seconds + 2))s" "http://127.0.0.1:18080$path" > "$work/profile-wrk.txt" &
load=$!
sleep 1
perf record -F 2000 -g -p "$gateway" -o "$work/perf.data" -- sleep "$seconds" 2> /dev/null
wait "$load"
grep Requests/sec "$work/profile-wrk.txt"
echo "--- by shared object"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head
echo "--- hottest symbols (self)"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | awk '{$NF=""; print}' | cut -c1-160 | head -60
