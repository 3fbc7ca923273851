#!/usr/bin/env bash
# Profiles the release gateway under the bench's 1 KB GET load and prints where its CPU time goes.
# perf (Debian linux-perf) samples with the software cpu-clock event, which works even where hardware
# counters are not exposed (as in most VMs). Usage: bench/profile.sh [seconds] [path]
# With COUNT=1 it samples nothing and instead counts, exactly, what each request costs in calls that the
# machine's noise cannot blur: reference-count operations (swift_retain/release and their bridge and _n forms),
# Swift object allocations, malloc calls and clock reads, through uprobes (perf probe), per request served.
# With H2=1 the load is HTTP/2 over TLS from h2load (10 connections x 10 streams, as the bench's h2-1k scenario);
# give counted runs 20 s or more: the connections' TLS handshakes are a fixed share spread over the requests served.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
connections="${CONNECTIONS:-50}"
path="${2:-/1k}"
scripts/ensure-packages.sh libhiredis-dev libjemalloc-dev zlib1g-dev libbrotli-dev libzstd-dev libcrypt-dev libmaxminddb-dev nginx wrk nghttp2-client linux-perf redis-server openssl >/dev/null
swift build -c release --product gateway >/dev/null
work=bench/.work
mkdir -p "$work/www"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
head -c 65536 /dev/zero | tr '\0' y > "$work/www/64k"
sed -e "s|@DIR@|$PWD/$work|g" -e "s|@UPSTREAM_PORT@|19001|g" bench/templates/nginx-upstream.conf > "$work/upstream.conf"
# The template's TLS listener and JWT route need a certificate and the JWT secret (as bench/run.py makes them).
mkdir -p "$work/tls"
[ -f "$work/tls/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" -days 30 -subj /CN=127.0.0.1 2>/dev/null
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

# Counts the probed calls over one wrk run; the requests come from wrk's own total, and perf is attached
# before wrk starts and detached after it ends, so every counted call belongs to the run (an idle gateway
# makes a handful per second, from its timers).
count_events() {
  local pid=$1 secs=$2 conns=$3 url_path=$4 swift_core libjemalloc libc args=()
  swift_core=$(ldd .build/release/gateway | awk '/libswiftCore.so/ {print $3}')
  libjemalloc=$(ldd .build/release/gateway | awk '/libjemalloc.so/ {print $3}')
  libc=$(ldd .build/release/gateway | awk '/libc.so.6/ {print $3}')
  perf probe -q -d 'probe_libswiftCore:*' 2>/dev/null || true
  # swift_retain/release return at once for null and tagged pointers (negative as integers: small strings,
  # bridged values) and for immortal objects (string literals, static metadata; the top bit of the
  # reference-count word): only the rest are atomic read-modify-writes, counted separately as "atomic".
  for fn in swift_retain swift_release; do
    perf probe -q -x "$swift_core" "$fn obj=%di:u64 rc=+8(%di):u64" 2>/dev/null || true
    args+=(-e "probe_libswiftCore:$fn")
  done
  for fn in swift_retain swift_release; do
    args+=(-e "probe_libswiftCore:$fn" --filter 'obj != 0 && obj < 0x8000000000000000 && rc < 0x8000000000000000')
  done
  for fn in swift_retain_n swift_release_n swift_bridgeObjectRetain swift_bridgeObjectRelease swift_allocObject; do
    perf probe -q -x "$swift_core" "$fn" 2>/dev/null || true
    args+=(-e "probe_libswiftCore:$fn")
  done
  perf probe -q -x "$libjemalloc" malloc 2>/dev/null || true
  perf probe -q -x "$libc" __clock_gettime 2>/dev/null || true
  args+=(-e probe_libjemalloc:malloc -e probe_libc:__clock_gettime)
  perf stat -x, "${args[@]}" -p "$pid" -o "$work/count.csv" &
  local stat=$!
  sleep 0.5
  local requests load
  if [ "${H2:-0}" = 1 ]; then
    load="h2load -c10 -m10, ${secs}s, $url_path over HTTP/2 and TLS"
    taskset -c 1 h2load -c 10 -m 10 -D "$secs" "https://127.0.0.1:18443$url_path" > "$work/count-wrk.txt"
  else
    load="wrk -c$conns, ${secs}s, $url_path"
    taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:18080$url_path" > "$work/count-wrk.txt"
  fi
  sleep 0.2
  kill -INT "$stat"; wait "$stat" || true
  # h2load: "requests: N total, N started, N done, N succeeded, ..."; wrk: "N requests in 8.00s, ...".
  requests=$(awk '/^requests:/ {print $8} /requests in/ {print $1}' "$work/count-wrk.txt")
  echo "requests: $requests ($load; each probe hit traps, so the rate is far below normal)"
  awk -F, -v n="$requests" '/probe_/ && $1 ~ /^[0-9]+$/ {
      sub(/^probe_[a-zA-Z]+:/, "", $3); name = $3
      if ((name == "swift_retain" || name == "swift_release") && seen[name]++) name = name " (atomic)"
      printf "%-30s %8.2f per request\n", name, $1 / n }' "$work/count.csv"
}
sleep 1
if [ "${H2:-0}" = 1 ]; then
  taskset -c 1 h2load -c 10 -m 10 -D 2 "https://127.0.0.1:18443$path" > /dev/null
  taskset -c 1 h2load -c 10 -m 10 -D "$((seconds + 2))" "https://127.0.0.1:18443$path" > "$work/profile-wrk.txt" &
else
  taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:18080$path" > /dev/null
  taskset -c 1 wrk -t1 -c"$connections" -d"$((seconds + 2))s" "http://127.0.0.1:18080$path" > "$work/profile-wrk.txt" &
fi
load=$!
sleep 1
if [ "${COUNT:-0}" = 1 ]; then
  wait "$load"
  count_events "$gateway" "$seconds" "$connections" "$path"
  exit 0
fi
perf record -F 2000 -g -p "$gateway" -o "$work/perf.data" -- sleep "$seconds" 2> /dev/null
wait "$load"
grep -E "Requests/sec|finished in" "$work/profile-wrk.txt"
echo "--- by shared object"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head
echo "--- hottest symbols (self)"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | awk '{$NF=""; print}' | cut -c1-160 | head -60
