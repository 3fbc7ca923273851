#!/usr/bin/env bash
# `make run`: start a demo upstream on every 127.0.0.1 target port of the config that nothing listens on
# yet, then run the gateway in the foreground. Ctrl-C (SIGINT) drains the gateway and stops the demos.
set -euo pipefail

config="${1:-gateway.json}"
bin="${BIN:-.build/debug}"
[ -f "$config" ] || { echo "no config at $config" >&2; exit 1; }

# The development certificate of gateway.json's TLS listener (certs/dev-*.pem), made on first run.
if grep -q '"certs/dev-cert.pem"' "$config"; then scripts/dev-cert.sh "$(dirname "$config")/certs"; fi

"$bin/gateway" check --config "$config" >&2 || { echo "fix $config first (see above)" >&2; exit 1; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The config and the files its "include" brings in (their upstreams need demos too).
config_files() {
  python3 - "$config" <<'PY'
import glob, json, os, sys
path = sys.argv[1]
print(path)
try:
    entries = json.load(open(path)).get("include", [])
except Exception:
    entries = []
for entry in entries if isinstance(entries, list) else []:
    pattern = entry if os.path.isabs(entry) else os.path.join(os.path.dirname(path) or ".", entry)
    for name in sorted(glob.glob(pattern)):
        if os.path.isfile(name):
            print(name)
PY
}
mapfile -t files < <(config_files)
target_ports() { cat "${files[@]}" | grep -oE '"https?://(127\.0\.0\.1|localhost):[0-9]+' | grep -oE '[0-9]+$' | sort -u; }

names=(a b c d e f g h)
index=0
for port in $(target_ports); do
  if port_open "$port"; then
    echo "port $port already answers; not starting a demo upstream there" >&2
    continue
  fi
  "$bin/demo-upstream" --port "$port" --name "${names[$((index % 8))]}" &
  pids+=($!)
  index=$((index + 1))
done

# Wait (briefly) for the demo upstreams to listen, so the first request does not race them.
for _ in $(seq 50); do
  ready=1
  for port in $(target_ports); do
    port_open "$port" || ready=0
  done
  [ "$ready" = 1 ] && break
  sleep 0.1
done

# A local Redis when the config points at one on this machine and nothing answers there yet.
redis_url=$(grep -oE '"url" *: *"redis://[^"]*"' "$config" | head -1 | sed -E 's/.*"(redis:\/\/[^"]*)"/\1/' || true)
if [ -n "$redis_url" ]; then
  redis_hostport=$(echo "$redis_url" | sed -E 's#redis://([^@/]*@)?##; s#/.*##')
  redis_host=${redis_hostport%%:*}
  redis_port=${redis_hostport##*:}
  [ "$redis_port" = "$redis_hostport" ] && redis_port=6379
  if [ "$redis_host" = "127.0.0.1" ] || [ "$redis_host" = "localhost" ]; then
    if ! port_open "$redis_port"; then
      echo "starting redis-server on 127.0.0.1:$redis_port for $config" >&2
      redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning &
      pids+=($!)
      for _ in $(seq 50); do port_open "$redis_port" && break; sleep 0.1; done
    fi
  fi
fi

"$bin/gateway" run --config "$config" &
gateway=$!
trap 'kill -INT $gateway 2>/dev/null || true' INT TERM
wait "$gateway" || true
