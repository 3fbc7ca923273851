#!/usr/bin/env python3
"""Benchmark the gateway against NGINX (and the bare upstream) on this machine, and write bench/RESULTS.md.

Layout: the proxy under test runs alone on CPU 0; wrk and the shared upstream (NGINX serving fixed bodies)
share CPU 1. Both proxies run one event loop / one worker against the same upstream, with upstream keepalive.
For every scenario, runs are interleaved (gateway, nginx, gateway, nginx, ...) and the median of the repeats
is reported, with gateway/NGINX ratios. CPU time per request comes from /proc/PID/stat of the proxy
process(es) over exactly the requests wrk counted.

Traffic goes to 127.0.0.1 only and every run is bounded by --duration.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
TICKS = os.sysconf("SC_CLK_TCK")

UPSTREAM_PORT = 19001
GATEWAY_PORT = 18080
NGINX_PORT = 18081
GATEWAY_TLS_PORT = 18443
NGINX_TLS_PORT = 18444
REDIS_PORT = 19379

PROXY_CPU = "0"
LOAD_CPU = "1"

# name: (title, path, active connections, POST body bytes (None = GET), idle keep-alive connections held open,
# options: "tls" (both proxies over TLS on their TLS ports), "jwt" (an Authorization header with a valid token),
# "upstream_path" (what the bare-upstream run asks for, when the proxies' path has a prefix), "h2_streams" (HTTP/2
# through h2load: that many concurrent streams on each of the connections))
SCENARIOS = {
    "get-1k": ("1 KB GET", "/1k", 50, None, 0, {}),
    "get-64k": ("64 KB GET", "/64k", 50, None, 0, {}),
    "post-1m": ("1 MB POST", "/upload", 16, 1 << 20, 0, {}),
    "conns-1k": ("1,000 connections, 1 KB GET", "/1k", 1000, None, 0, {}),
    # 10,000 concurrent keep-alive connections: 9,000 idle ones held open plus 1,000 busy ones. (Ten
    # thousand busy ones would need ten thousand upstream sockets too, over this machine's 20,000 file
    # descriptor limit per process, which cannot be raised here.)
    "conns-10k": ("10,000 connections (9,000 idle + 1,000 busy), 1 KB GET", "/1k", 1000, None, 9000, {}),
    # TLS termination on keep-alive connections (the handshake once per connection; the cost per request is
    # the record layer): the gateway's swift-nio-ssl (BoringSSL) against NGINX's OpenSSL, same ECDSA P-256
    # certificate, TLS 1.3 as wrk negotiates it. The bare-upstream run is plain HTTP.
    "tls-1k": ("1 KB GET over TLS", "/1k", 50, None, 0, {"tls": True}),
    # HTTP/2 over TLS as browsers speak it: 10 connections with 10 concurrent streams each (h2load), so 100
    # requests in flight. Both proxies forward over HTTP/1.1 with keepalive. The bare-upstream run is plain
    # HTTP/1.1 through wrk with as many connections as there are streams.
    "h2-1k": ("1 KB GET over HTTP/2 and TLS (10 connections x 10 streams)", "/1k", 10, None, 0,
              {"tls": True, "h2_streams": 10}),
    # The gateway's full filter chain: JWT validation (HS256), a Redis token bucket per consumer that never
    # trips, security headers, request id and trace context. NGINX has no JWT validation or shared rate
    # limits in its free edition: it proxies the same request plainly, so this ratio is the price of the
    # features against NGINX doing less.
    "chain-1k": ("1 KB GET through JWT + Redis rate limit + security headers (NGINX: plain proxying)", "/chain/1k", 50,
                 None, 0, {"jwt": True, "upstream_path": "/1k"}),
    # Both proxies answer from their cache (the gateway's memory LRU, NGINX's proxy_cache); the bare-upstream
    # run serves the same file directly.
    "cache-hit": ("1 KB cache hit (gateway cache vs NGINX proxy_cache)", "/cached/1k", 50, None, 0, {}),
}

# Gateway-only comparisons: the same request on a route with a Redis-backed limit that never trips and
# on a route without limits (NGINX has no shared rate limits to compare with).
FEATURES = {
    "ratelimit-redis": ("Redis token bucket that never trips, 64 connections, 1 KB GET", "/limited/1k", "/1k", 64),
}


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def render(template, target, values):
    text = (BENCH / "templates" / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    target.write_text(text)
    return target


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def process_tree(pid):
    """The pid and its children (NGINX's master and worker)."""
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(child) for child in children]
    except FileNotFoundError:
        pass
    return pids


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)
        except FileNotFoundError:
            pass
    return total / TICKS


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


class Service:
    def __init__(self, name, command, port, cpu, cwd=None, tls_port=None):
        self.name = name
        self.port = port
        self.tls_port = tls_port
        log_file = open(WORK / f"{name}.log", "w")
        self.process = subprocess.Popen(
            ["taskset", "-c", cpu] + command, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd,
            preexec_fn=raise_fd_limit)
        wait_port(port)
        time.sleep(0.2)

    @property
    def pids(self):
        return process_tree(self.process.pid)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


# The HS256 secret the bench gateway's JWT key reads from its environment, and a token it accepts.
JWT_SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


def bench_token():
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "bench"}).encode())
    claims = b64(json.dumps({"iss": "https://bench.test/", "aud": "bench", "sub": "bench-client",
                             "iat": now, "exp": now + 86400}).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def make_certificate(directory):
    """A self-signed ECDSA P-256 certificate for both proxies' TLS listeners."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"), "-days", "30",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_wrk(port, path, connections, duration, body, tls=False, headers=()):
    threads = 1 if connections <= 1000 else 2
    env = dict(os.environ)
    if body:
        env["WRK_BODY_BYTES"] = str(body)
    command = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
        "--timeout", "10s", "-s", str(BENCH / "templates" / "report.lua"),
    ]
    for header in headers:
        command += ["-H", header]
    command.append(f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}")
    result = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=raise_fd_limit,
                            timeout=duration + 60)
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            non2xx = 0
            for text_line in result.stdout.splitlines():
                if "Non-2xx" in text_line:
                    non2xx = int(text_line.split(":")[1])
            data["non2xx"] = non2xx
            data["errors"] = (data["connect_errors"] + data["read_errors"] + data["write_errors"]
                              + data["timeouts"] + non2xx)
            return data
    raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")


def run_h2load(port, path, connections, streams, duration):
    """HTTP/2 over TLS through h2load; returns the keys `run_wrk` returns. h2load prints no percentiles, so they
    come from its per-request log (one line per request: start time, status, latency in µs)."""
    log_path = WORK / "h2load-requests.log"
    command = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(connections), "-m", str(streams), "-D", str(duration),
               "--log-file", str(log_path), f"https://127.0.0.1:{port}{path}"]
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=raise_fd_limit, timeout=duration + 60)
    requests = failed = None
    seconds = None
    non2xx = 0
    for line in result.stdout.splitlines():
        words = line.split()
        if line.startswith("finished in"):
            seconds = float(words[2].rstrip("s,"))
        elif line.startswith("requests:"):
            # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            requests = int(words[7])
            failed = int(words[9]) + int(words[11]) + int(words[13])
        elif line.startswith("status codes:"):
            non2xx = sum(int(words[i]) for i in (4, 6, 8))
    if requests is None or seconds is None:
        raise RuntimeError(f"h2load failed: {result.stdout}\n{result.stderr}")
    latencies = sorted(int(line.split()[2]) for line in log_path.read_text().splitlines() if line.strip())
    log_path.unlink()

    def percentile(fraction):
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] if latencies else 0
    return {"requests": requests, "duration_us": seconds * 1e6, "p50_us": percentile(0.50), "p99_us": percentile(0.99),
            "p999_us": percentile(0.999), "non2xx": non2xx, "errors": failed + non2xx}


def measure(service, scenario, duration):
    _, path, connections, body, idle, options = SCENARIOS[scenario]
    pids = service.pids if service else []
    port = service.port if service else UPSTREAM_PORT
    tls = bool(service and options.get("tls"))
    if tls:
        port = service.tls_port
    if not service:
        path = options.get("upstream_path", path)
    headers = [f"Authorization: Bearer {bench_token()}"] if service and options.get("jwt") else []
    streams = options.get("h2_streams")
    held = open_idle_connections(port, idle) if idle else []
    try:
        before = cpu_seconds(pids)
        if streams and service:
            data = run_h2load(port, path, connections, streams, duration)
        else:
            data = run_wrk(port, path, connections * (streams or 1), duration, body, tls=tls, headers=headers)
        after = cpu_seconds(pids)
    finally:
        for s in held:
            s.close()
    requests = max(data["requests"], 1)
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["cpu_us_per_request"] = (after - before) * 1e6 / requests if service else None
    return data


def open_idle_connections(port, count):
    """Opens `count` keep-alive connections, each after one complete request, and returns the sockets."""
    sockets = []
    request = b"GET /1k HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            sockets.append(s)
        for s in sockets:
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed while opening idle connections")
                received += chunk
            head, _, rest = received.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(rest) < length:
                rest += s.recv(65536)
    except Exception:
        for s in sockets:
            s.close()
        raise
    return sockets


def measure_path(service, path, connections, duration):
    before = cpu_seconds(service.pids)
    data = run_wrk(service.port, path, connections, duration, None)
    after = cpu_seconds(service.pids)
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["cpu_us_per_request"] = (after - before) * 1e6 / max(data["requests"], 1)
    return data


def idle_rss_per_connection(service, count):
    """Opens `count` keep-alive connections (one request each), then compares the proxy's RSS."""
    time.sleep(0.5)
    baseline = rss_bytes(service.pids)
    sockets = open_idle_connections(service.port, count)
    try:
        time.sleep(1.0)
        loaded = rss_bytes(service.pids)
    finally:
        for s in sockets:
            s.close()
    return (loaded - baseline) / count, baseline, loaded


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine_description():
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "nginx": nginx, "swift": swift, "h2load": h2load,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
    }


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}x"


def paired_ratios(gateway_runs, nginx_runs, key):
    """The gateway/NGINX ratio of each repeat: its gateway run and the NGINX run next to it in time, which share
    the machine's state (this machine kind's speed drifts by 10-25% within minutes). Returns (median, min, max)."""
    pairs = [g[key] / n[key] for g, n in zip(gateway_runs, nginx_runs) if g[key] is not None and n[key]]
    if not pairs:
        return None
    return statistics.median(pairs), min(pairs), max(pairs)


def fmt_ratio(paired):
    return "-" if paired is None else f"{paired[0]:.2f}x"


def fmt_range(paired):
    return "-" if paired is None else f"{paired[1]:.2f}-{paired[2]:.2f}x"


def write_results(path, machine, args, results, idle, started, features):
    lines = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`bench/run.py`); do not edit by hand.",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Linux {machine['kernel']}",
        f"- Software: {machine['swift']}; {machine['nginx']}; wrk 4.1; {machine['h2load']}",
        f"- Command: `python3 bench/run.py --duration {args.duration} --repeat {args.repeat}"
        f" --scenarios {','.join(args.scenarios)}`",
        "- Layout: the proxy under test alone on CPU 0 (`taskset`); wrk, the upstream (NGINX serving fixed bodies)"
        " and the gateway's Redis on CPU 1. Gateway: release build, `workers: 1`, access log off, 1,024 idle upstream connections kept."
        " NGINX: `worker_processes 1`, upstream `keepalive 1024`, `proxy_request_buffering off` (it streams"
        " bodies like the gateway), access log off, the same headers added (X-Request-ID, security headers,"
        " X-Forwarded-For). Templates: `bench/templates/`.",
        f"- Each cell is the median of {args.repeat} interleaved runs of {args.duration} s. CPU is the proxy"
        " process's user+system time (from /proc/PID/stat) divided by the requests served.",
        "",
        "| scenario | target | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    summary = {}
    for scenario in args.scenarios:
        title = SCENARIOS[scenario][0]
        cells = {}
        for target in ("gateway", "nginx", "upstream"):
            runs = results.get((scenario, target), [])
            if not runs:
                continue
            cells[target] = {
                "rps": median([r["rps"] for r in runs]),
                "p50": median([r["p50_us"] / 1000 for r in runs]),
                "p99": median([r["p99_us"] / 1000 for r in runs]),
                "p999": median([r["p999_us"] / 1000 for r in runs]),
                "cpu": median([r["cpu_us_per_request"] for r in runs]),
                "errors": max(r["errors"] for r in runs),
            }
            c = cells[target]
            label = {"gateway": "gateway", "nginx": "NGINX", "upstream": "bare upstream"}[target]
            lines.append(
                f"| {title} | {label} | {fmt(c['rps'], 0)} | {fmt(c['p50'], 2)} | {fmt(c['p99'], 2)} | "
                f"{fmt(c['p999'], 2)} | {fmt(c['cpu'])} | {c['errors']} |")
        if "gateway" in cells and "nginx" in cells:
            g_runs, n_runs = results[(scenario, "gateway")], results[(scenario, "nginx")]
            paired = {key: paired_ratios(g_runs, n_runs, key) for key in ("rps", "cpu_us_per_request", "p99_us")}
            summary[scenario] = (cells["gateway"], cells["nginx"], paired)
            ratios.append(
                f"| {title} | {fmt_ratio(paired['rps'])} | {fmt_ratio(paired['cpu_us_per_request'])} | "
                f"{fmt_range(paired['cpu_us_per_request'])} | {fmt_ratio(paired['p99_us'])} |")
    lines += [
        "",
        "## Gateway / NGINX",
        "",
        "Throughput above 1.0x and CPU and p99 below 1.0x favour the gateway. Each ratio is the median over the"
        " repeats of one gateway run against the NGINX run next to it in time (they share the machine's state,"
        " which drifts between repeats), so it can differ from the ratio of the medians above; the CPU range is"
        " the lowest and highest of those per-repeat ratios.",
        "",
        "| scenario | req/s | CPU µs/req | CPU range | p99 |",
        "|---|---:|---:|---:|---:|",
    ] + ratios
    if features:
        lines += ["", "## Gateway features (gateway only)", "",
                  "The same 1 KB GET through a route with the feature and through one without it.", "",
                  "| feature | req/s with | req/s without | ratio | p99 with | p99 without | added p99 | CPU µs/req with | without |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, (title, *_rest) in FEATURES.items():
            with_runs, without_runs = features.get((name, "with"), []), features.get((name, "without"), [])
            if not with_runs or not without_runs:
                continue
            w_rps, o_rps = median([r["rps"] for r in with_runs]), median([r["rps"] for r in without_runs])
            w_p99, o_p99 = median([r["p99_us"] / 1000 for r in with_runs]), median([r["p99_us"] / 1000 for r in without_runs])
            w_cpu, o_cpu = median([r["cpu_us_per_request"] for r in with_runs]), median([r["cpu_us_per_request"] for r in without_runs])
            summary[name] = (w_rps / o_rps, w_p99 - o_p99)
            lines.append(f"| {title} | {fmt(w_rps, 0)} | {fmt(o_rps, 0)} | {ratio(w_rps, o_rps)} | {fmt(w_p99, 2)} ms | "
                         f"{fmt(o_p99, 2)} ms | {fmt(w_p99 - o_p99, 2)} ms | {fmt(w_cpu)} | {fmt(o_cpu)} |")
    targets = []
    if "ratelimit-redis" in summary:
        throughput, added = summary["ratelimit-redis"]
        targets.append(f"| Redis rate limit: req/s >= 0.8x the unlimited route | {'met' if throughput >= 0.8 else 'not met'} | {throughput:.2f}x |")
        targets.append(f"| Redis rate limit: added p99 < 1 ms at 64 connections | {'met' if added < 1 else 'not met'} | {added:.2f} ms |")
    if "get-1k" in summary:
        g, n, paired = summary["get-1k"]
        rps, cpu, p99 = paired["rps"][0], paired["cpu_us_per_request"][0], paired["p99_us"][0]
        checks = [
            ("1 KB GET: req/s >= 1.0x NGINX", rps >= 1.0, f"{rps:.2f}x"),
            ("1 KB GET: CPU µs/request <= 1.0x NGINX", cpu <= 1.0, f"{cpu:.2f}x"),
            ("1 KB GET: p99 <= NGINX's", p99 <= 1.0, f"{p99:.2f}x ({g['p99']:.2f} ms vs {n['p99']:.2f} ms, medians)"),
        ]
        targets += [f"| {name} | {'met' if ok else 'not met'} | {value} |" for name, ok, value in checks]
    if "gateway" in idle:
        per = idle["gateway"][1]
        targets.append(f"| idle keep-alive connection < 20 KiB RSS | {'met' if per < 20 * 1024 else 'not met'} | {per / 1024:.1f} KiB |")
    if targets:
        lines += ["", "## Targets", "", "| target | status | measured |", "|---|---|---|"] + targets
    if idle:
        lines += ["", "## Memory per idle keep-alive connection", "",
                  "| target | connections | RSS before | RSS after | per connection |", "|---|---:|---:|---:|---:|"]
        for target, (count, per, before, after) in idle.items():
            lines.append(f"| {target} | {count:,} | {before / 2**20:.1f} MiB | {after / 2**20:.1f} MiB | "
                         f"{per / 1024:.1f} KiB |")
    notes = BENCH / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    path.write_text("\n".join(lines) + "\n")


def prepare_work():
    """A fresh WORK directory: the upstream's bodies, a certificate, and the rendered configs (upstream NGINX,
    proxy NGINX, gateway)."""
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "www").mkdir(parents=True)
    (WORK / "www" / "1k").write_bytes(b"x" * 1024)
    (WORK / "www" / "64k").write_bytes(b"y" * 65536)
    make_certificate(WORK / "tls")
    os.environ["BENCH_JWT_SECRET"] = JWT_SECRET
    values = {
        "DIR": WORK, "UPSTREAM_PORT": UPSTREAM_PORT, "NGINX_PORT": NGINX_PORT, "GATEWAY_PORT": GATEWAY_PORT,
        "REDIS_PORT": REDIS_PORT, "GATEWAY_TLS_PORT": GATEWAY_TLS_PORT, "NGINX_TLS_PORT": NGINX_TLS_PORT,
    }
    return (render("nginx-upstream.conf", WORK / "upstream.conf", values),
            render("nginx-proxy.conf", WORK / "proxy.conf", values),
            render("gateway.json", WORK / "gateway.json", values))


def start_backends(upstream_conf, services):
    """The upstream NGINX and the gateway's Redis on the load CPU, appended to `services` as they start."""
    services.append(Service("upstream", ["nginx", "-c", str(upstream_conf), "-p", str(WORK)], UPSTREAM_PORT, LOAD_CPU))
    services.append(Service(
        "redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--daemonize", "no", "--dir", str(WORK)], REDIS_PORT, LOAD_CPU))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=2, help="runs per target and scenario (interleaved)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--idle-connections", type=int, default=10000, help="0 skips the idle-connection RSS test")
    parser.add_argument("--no-features", dest="features", action="store_false", help="skip the gateway-only feature runs")
    parser.add_argument("--gateway", default=str(ROOT / ".build/release/gateway"))
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {unknown}")
    for tool in ("nginx", "wrk", "h2load", "taskset", "redis-server", "openssl"):
        if not shutil.which(tool):
            parser.error(f"{tool} is missing (make bench installs it)")
    if os.cpu_count() < 2:
        parser.error("needs at least 2 cores (proxy on one, load on the other)")
    raise_fd_limit()

    started = datetime.datetime.now(datetime.timezone.utc)
    upstream_conf, proxy_conf, gateway_conf = prepare_work()

    services = []
    try:
        log("starting the upstream, NGINX and the gateway")
        start_backends(upstream_conf, services)
        nginx = Service("nginx", ["nginx", "-c", str(proxy_conf), "-p", str(WORK)], NGINX_PORT, PROXY_CPU,
                        tls_port=NGINX_TLS_PORT)
        services.append(nginx)
        gateway = Service("gateway", [args.gateway, "run", "--config", str(gateway_conf)], GATEWAY_PORT, PROXY_CPU,
                          tls_port=GATEWAY_TLS_PORT)
        services.append(gateway)
        targets = {"gateway": gateway, "nginx": nginx}

        for name, service in targets.items():
            log(f"warming up {name}")
            run_wrk(service.port, "/1k", 50, 2, None)

        # Memory per idle connection first, while the processes' heaps are still small: afterwards an
        # allocator keeps what the busy runs grew to and the difference would read as zero.
        idle = {}
        if args.idle_connections:
            for name, service in targets.items():
                per, before, after = idle_rss_per_connection(service, args.idle_connections)
                idle[name] = (args.idle_connections, per, before, after)
                log(f"{name}: {per / 1024:.1f} KiB per idle connection")

        results = {}
        for scenario in args.scenarios:
            for repeat in range(args.repeat):
                order = ["gateway", "nginx"] if repeat % 2 == 0 else ["nginx", "gateway"]
                for target in order:
                    data = measure(targets[target], scenario, args.duration)
                    results.setdefault((scenario, target), []).append(data)
                    log(f"{scenario} {target} #{repeat + 1}: {data['rps']:,.0f} req/s, "
                        f"p99 {data['p99_us'] / 1000:.2f} ms, {fmt(data['cpu_us_per_request'])} µs CPU/req, "
                        f"{data['errors']} errors")
                data = measure(None, scenario, args.duration)
                results.setdefault((scenario, "upstream"), []).append(data)
                log(f"{scenario} bare upstream #{repeat + 1}: {data['rps']:,.0f} req/s")
                time.sleep(1)  # let sockets closed by the previous run leave TIME_WAIT pressure behind

        features = {}
        if args.features:
            for name, (title, limited_path, plain_path, connections) in FEATURES.items():
                for repeat in range(args.repeat):
                    for variant, path in (("with", limited_path), ("without", plain_path)):
                        data = measure_path(gateway, path, connections, args.duration)
                        features.setdefault((name, variant), []).append(data)
                        log(f"{name} {variant} #{repeat + 1}: {data['rps']:,.0f} req/s, p99 {data['p99_us'] / 1000:.2f} ms, "
                            f"{fmt(data['cpu_us_per_request'])} µs CPU/req")

        write_results(Path(args.out), machine_description(), args, results, idle, started, features)
        log(f"wrote {args.out}")
        print(Path(args.out).read_text())
    finally:
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    main()
