#!/usr/bin/env python3
"""A/B two gateway builds on one scenario: alternating runs, user and system CPU µs per request of each.

Usage: python3 bench/ab.py ROUNDS BINARY_A BINARY_B [...]
  e.g. cp .build/release/gateway /tmp/gw-a; (change, rebuild); python3 bench/ab.py 6 /tmp/gw-a .build/release/gateway
Environment: ABPATH (default /1k), ABCONNS (default 50), ABSECS (seconds per run, default 6), ABACCESSLOG=1
(the access log on, one line per request to the gateway's standard output, a file here).

Same layout as run.py (gateway alone on CPU 0; wrk, the NGINX upstream and Redis on CPU 1) and the same
bench/templates/gateway.json. Each round starts every binary afresh (order reversed on odd rounds), warms
it for 2 s, then measures; the medians are printed at the end. This machine kind's speed drifts by 10-25%
within minutes, so compare neighbouring runs and medians, not single numbers.
"""
import os
import statistics
import sys
import time

import run as R


def cpu_split(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / R.TICKS, int(fields[12]) / R.TICKS


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, binaries = int(sys.argv[1]), sys.argv[2:]
    path = os.environ.get("ABPATH", "/1k")
    connections = int(os.environ.get("ABCONNS", "50"))
    seconds = int(os.environ.get("ABSECS", "6"))
    R.raise_fd_limit()
    upstream_conf, _, gateway_conf = R.prepare_work()
    if os.environ.get("ABACCESSLOG") == "1":
        text = gateway_conf.read_text()
        gateway_conf.write_text(text.replace('"access_log": false', '"access_log": true'))
    services, results = [], {binary: [] for binary in binaries}
    try:
        R.start_backends(upstream_conf, services)
        for round_index in range(rounds):
            for binary in (binaries if round_index % 2 == 0 else list(reversed(binaries))):
                gateway = R.Service("gateway", [binary, "run", "--config", str(gateway_conf)], R.GATEWAY_PORT, R.PROXY_CPU)
                try:
                    R.run_wrk(R.GATEWAY_PORT, path, connections, 2, None)
                    user0, system0 = cpu_split(gateway.process.pid)
                    data = R.run_wrk(R.GATEWAY_PORT, path, connections, seconds, None)
                    user1, system1 = cpu_split(gateway.process.pid)
                finally:
                    gateway.stop()
                requests = max(data["requests"], 1)
                row = (data["requests"] / (data["duration_us"] / 1e6), (user1 - user0) * 1e6 / requests,
                       (system1 - system0) * 1e6 / requests)
                results[binary].append(row)
                print(f"{binary}: {row[0]:,.0f} req/s, user {row[1]:.2f} µs, system {row[2]:.2f} µs", flush=True)
                time.sleep(1)
    finally:
        for service in reversed(services):
            service.stop()
    for binary, rows in results.items():
        print(f"{binary}: median {statistics.median(r[0] for r in rows):,.0f} req/s, "
              f"user {statistics.median(r[1] for r in rows):.2f} µs (min {min(r[1] for r in rows):.2f}), "
              f"system {statistics.median(r[2] for r in rows):.2f} µs")


if __name__ == "__main__":
    main()
