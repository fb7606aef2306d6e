"""The ``keepalive`` scenario: one node as deployed, many keep-alive clients through nginx.

One node: ``python -m app serve`` with the production defaults and two
workers, bound to a unix socket as the Ansible app role binds it
(``/run/peregrine/gunicorn.sock``, here in a temporary directory), with nginx
in front as the nginx role renders it (bench/compare/edge.py: the lb site,
TLS). The app and nginx share CPU0 (or, ``--keepalive-cpus both``, both
vCPUs); wrk, Postgres and memcached run on CPU1.

The clients arrive over a ramp, 1,000 at a time (one wrk process each); each
connection, once open, sends the cached product read (rotated over the product
ids) at once, and then again ``connections / rate`` seconds (on average) after
each answer (bench/compare/keepalive.lua). After a warm-up in which every
connection opened, the run is measured: req/s and p50/p99 of the requests sent
in it, connections held (ESTABLISHED sockets on nginx's HTTPS port, sampled
every second), and the CPU and RSS of nginx's and the app's workers. Errors
(wrk's statuses >= 400 and socket errors) count over the whole run, the
opening included; nginx's own status counts and error log are reported too.
"""

import collections
import os
import re
import resource
import socket
import subprocess
import sys
import time

from bench.compare import measure, servers
from bench.compare.edge import Edge
from bench.http_workers import cpu_seconds, parse_wrk

LUA = os.path.join(servers.ROOT, "bench", "compare", "keepalive.lua")
ROTATE_LUA = os.path.join(servers.ROOT, "bench", "wrk", "rotate.lua")
CLIENT_CPU = 1
# Where the node runs: "split" as every scenario runs (the node on CPU0, the clients
# and services on CPU1), or "both": the node on both vCPUs as deployed (nginx's auto is one
# worker per vCPU, the app one per vCPU), the clients and services still on CPU1.
NODE_CPUS = {"split": {0}, "both": {0, 1}}
# As the Ansible roles set LimitNOFILE for gunicorn and nginx (app_limit_nofile,
# nginx_limit_nofile); wrk needs one descriptor per connection too.
NOFILE = 65536
NODE_WORKERS = 2
# Connections per wrk process: a batch of clients arriving together.
BATCH = 1_000


def node(statsd_port: int) -> servers.Server:
    server = servers.peregrine(statsd_port, name="node")
    server.env["PEREGRINE_WORKERS"] = str(NODE_WORKERS)
    return server


def raise_nofile(needed: int) -> int:
    """Raise the open-file limit of the harness and of every child it starts from now
    on to NOFILE, or to the hard limit where that is lower (a container without
    CAP_SYS_RESOURCE cannot raise it, even as root); return the limit set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if want < needed:
        raise RuntimeError(f"{needed} open files are needed and the hard limit is {hard}: "
                           f"raise it first (ulimit -Hn, as root)")
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def established(port: int) -> int:
    """Connections nginx holds on ``port`` (accepted or waiting in the accept queue)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return out.count("\n")


def wait_for_socket(path: str, process: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited {process.returncode} before serving")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(path)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the app did not listen on {path} within {timeout} s")


def app_workers(process: subprocess.Popen) -> list[int]:
    for _ in range(100):
        found = servers.children(process.pid)
        if len(found) >= NODE_WORKERS:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"the app started {len(found)} of {NODE_WORKERS} workers")


def cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def runtime_s(wrk_output: str) -> float:
    value, unit = re.search(r"requests in ([\d.]+)(ms|s|m|h)", wrk_output).groups()
    return float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def run(statsd_port: int, env: dict, paths_file: str, args, tmp: str) -> dict:
    """One measured run of the scenario; every figure the report prints."""
    nofile = raise_nofile(args.keepalive_connections + 1024)
    node_cpus = NODE_CPUS[args.keepalive_cpus]
    socket_dir = os.path.join(tmp, "run-peregrine")
    os.makedirs(socket_dir, exist_ok=True)
    sock = os.path.join(socket_dir, "gunicorn.sock")
    log_path = os.path.join(tmp, "node.log")
    with open(log_path, "wb") as log:
        app = servers.start(node(statsd_port), None, env, log, bind=f"unix:{sock}",
                            cpus=",".join(map(str, sorted(node_cpus))))
    edge = None
    try:
        wait_for_socket(sock, app)
        workers = app_workers(app)
        edge = Edge(f"unix:{sock}", nofile).start(node_cpus)
        edge.wait_until_serving()
        result = drive(edge, workers, paths_file, args)
    except BaseException:
        if edge is not None:
            edge.stop()
        servers.stop(app)
        with open(log_path, "rb") as f:
            sys.stderr.write(f.read()[-3000:].decode(errors="replace"))
        raise
    result["nginx"] = edge.stop(since=result.pop("start"))
    result["deviations"] = edge.deviations()
    servers.stop(app)
    with open(log_path, "rb") as f:
        result["request_log_lines"] = f.read().count(b'"msg":"request"')
    os.unlink(log_path)
    # Over the whole run, the opening included: what the clients saw go wrong.
    result["errors"] = result["non_2xx"] + result["socket_errors"]
    return result


def wrk_command(url: str, connections: int, seconds: float, paths_file: str, pace_ms: int,
                start: float) -> list[str]:
    return ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{connections}",
            f"-d{max(1, round(seconds))}s", "--timeout", "5s", "--latency", "-s", LUA, url,
            "--", paths_file, str(pace_ms), str(round(start * 1000)), str(connections)]


def merged(outputs: list[str]) -> dict:
    """The runs of several wrk processes as one: summed counts, one latency distribution."""
    totals = {"requests": 0, "non_2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0,
              "opened": 0, "late": 0, "measured": 0, "measured_errors": 0, "last_open_ms": 0}
    histogram = collections.Counter()
    for out in outputs:
        parsed = parse_wrk(out)
        totals["requests"] += parsed["requests"]
        totals["non_2xx"] += parsed["non_2xx"]
        sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                            r"timeout (\d+)", out)
        for name, value in zip(("connect", "read", "write", "timeout"),
                               sockets.groups() if sockets else (0, 0, 0, 0), strict=True):
            totals[name] += int(value)
        opened = dict(re.findall(r"(\w+)=(\d+)", re.search(r"^keepalive (.*)$", out, re.M)[1]))
        for name in ("opened", "late", "measured", "measured_errors"):
            totals[name] += int(opened[name])
        totals["last_open_ms"] = max(totals["last_open_ms"], int(opened["last_open_ms"]))
        line = re.search(r"^keepalive_latency_us ?(.*)$", out, re.M)[1]
        for bucket in line.split():
            value, count = bucket.split(":")
            histogram[int(value)] += int(count)
    totals["p50_ms"] = percentile(histogram, 50) / 1000
    totals["p99_ms"] = percentile(histogram, 99) / 1000
    totals["max_ms"] = max(histogram, default=0) / 1000
    return totals


def percentile(histogram: collections.Counter, p: float) -> float:
    """As wrk computes it: the smallest value with at least p% of the samples at or below."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    wanted, seen = total * p / 100, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= wanted:
            return float(value)
    return float(max(histogram))


def drive(edge: Edge, workers: list[int], paths_file: str, args) -> dict:
    url = f"https://127.0.0.1:{edge.https_port}/"
    # Fill the caches and TLS paths first, with a few connections, as every scenario does.
    warm = measure.wrk(url, 3, 16, ["-s", ROTATE_LUA], ["--", paths_file])
    if warm["non_2xx"] or warm["socket_errors"]:
        raise RuntimeError(f"warm-up through nginx failed: {warm}")

    connections, seconds = args.keepalive_connections, args.keepalive_seconds
    pace_ms = round(connections / args.keepalive_rate * 1000)
    # Clients arrive over the ramp, a batch at a time (one wrk process each), as they
    # would at a real node; all of them at once is --keepalive-ramp 0.
    batches = max(1, -(-connections // BATCH))
    sizes = [connections // batches + (i < connections % batches) for i in range(batches)]
    step = args.keepalive_ramp / max(batches - 1, 1)
    load_start = loadavg()
    launched = time.time()
    start = launched + args.keepalive_warmup
    processes, launches, held_at, held = [], [], None, []
    try:
        for index, size in enumerate(sizes):
            launch_at = launched + index * step
            while time.time() < launch_at:
                time.sleep(0.05)
            launches.append(time.time())
            command = wrk_command(url, size, start + seconds - launches[-1], paths_file,
                                  pace_ms, start)
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
        while time.time() < start:
            count = established(edge.https_port)
            if held_at is None and count >= connections:
                held_at = time.time()
            time.sleep(0.5)
        nginx_workers = edge.workers()
        wrk_pids = [wrk.pid for wrk in processes]
        before = {"nginx": cpu(edge.pids()), "app": cpu(workers), "wrk": cpu(wrk_pids)}
        window_start = time.time()
        window_end = start + seconds - 1  # stop sampling before wrk closes its connections
        while time.time() < window_end:
            held.append(established(edge.https_port))
            time.sleep(max(0.0, min(1.0, window_end - time.time())))
        window = time.time() - window_start
        after = {"nginx": cpu(edge.pids()), "app": cpu(workers), "wrk": cpu(wrk_pids)}
        rss = {"nginx": sum(measure.rss_mb(pid) for pid in edge.pids()),
               "nginx_workers": [measure.rss_mb(pid) for pid in nginx_workers],
               "app": [measure.rss_mb(pid) for pid in workers]}
        outputs = []
        for wrk in processes:
            out, err = wrk.communicate(timeout=60)
            if wrk.returncode:
                raise RuntimeError(f"wrk exited {wrk.returncode}: {err.strip()}")
            outputs.append(out)
    finally:
        for wrk in processes:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
    result = merged(outputs)
    # wrk ran until start + seconds; no request went out before the start.
    measured = max(at + runtime_s(out) for at, out in zip(launches, outputs, strict=True)) - start
    result["rps"] = result["measured"] / measured
    result["socket_errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout"))
    share = {name: (after[name] - before[name]) / window for name in before}
    served = result["rps"] * window  # requests in the CPU window, at the measured rate
    result.update({
        "connections": connections, "rate_offered": args.keepalive_rate, "pace_ms": pace_ms,
        "seconds": round(measured, 1), "warmup_s": args.keepalive_warmup,
        "node_cpus": args.keepalive_cpus, "ramp_s": args.keepalive_ramp,
        "wrk_processes": batches, "start": start,
        "tcp_open_s": None if held_at is None else round(held_at - launched, 1),
        "tls_open_s": round(result.pop("last_open_ms") / 1000 - launched, 1),
        "tls_opened": result.pop("opened"),
        "held_min": min(held), "held_end": held[-1],
        "cpu_us": share["app"] * window / max(served, 1) * 1e6,
        "rss_mb": max(rss["app"]),
        "app_cpu_pct": share["app"] * 100, "app_rss_mb": rss["app"],
        "nginx_cpu_pct": share["nginx"] * 100,
        "nginx_cpu_us": share["nginx"] * window / max(served, 1) * 1e6,
        "nginx_rss_mb": rss["nginx"], "nginx_worker_rss_mb": rss["nginx_workers"],
        "nginx_workers": len(nginx_workers), "wrk_cpu_pct": share["wrk"] * 100,
        "load_average": {"start": load_start, "end": loadavg()},
    })
    return result
