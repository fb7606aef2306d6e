"""What the request log line, statsd and worker recycling cost on ``/healthz``.

The measurement is ``bench/http_workers.py``'s: ``python -m app serve`` (the
shipped ``gunicorn.conf.py``) with one worker pinned to CPU0, wrk with 64
connections pinned to CPU1, a 2 s warm-up, then a bounded run. Four
scenarios, interleaved round by round, medians reported:

``off``       PEREGRINE_LOG_LEVEL=warning, no statsd, ``--max-requests 0``
``log``       the default ``info`` level: one JSON line per request
``log+statsd`` and PEREGRINE_STATSD_ADDR pointing at a UDP sink on CPU1
``prod``      and the shipped max_requests / max_requests_jitter

CPU is charged to the whole server (master + every worker, live or reaped:
utime+stime+cutime+cstime of the master plus each live child), so a
recycled worker's boot counts. The log goes to a file (stderr of the
server), as journald would read it from a pipe.

Usage::

    .venv/bin/python bench/overhead.py [--duration 10] [--rounds 3]

``--callgrind`` counts instructions per ``/healthz`` request instead, which
other jobs on the machine do not move: the app in-process (Falcon, the
middleware, the request line, statsd; no HTTP worker, no recycling), under
``valgrind --tool=callgrind``, once with ``--callgrind-requests`` requests
and once with twice as many, so interpreter start-up and imports cancel out.
Scenarios ``off`` (warning level, no statsd) and ``log+statsd`` (info, statsd
at a UDP port nobody reads); log lines go to a file. No stack needed::

    .venv/bin/python bench/overhead.py --callgrind [--callgrind-requests 5000]
"""

import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading

from http_workers import ROOT, base_parser, free_port, parse_wrk, wait_until_serving

SCENARIOS = ("off", "log", "log+statsd", "prod")


def tree_cpu_seconds(master):
    """CPU seconds of ``master``, its reaped children and its live ones."""
    def fields(pid):
        with open(f"/proc/{pid}/stat") as f:
            return [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]
    total = sum(fields(master))  # utime, stime, cutime, cstime
    with open(f"/proc/{master}/task/{master}/children") as f:
        for child in f.read().split():
            try:
                total += sum(fields(int(child))[:2])
            except FileNotFoundError:
                pass  # exited between the listing and the read; not yet reaped
    return total / os.sysconf("SC_CLK_TCK")


def udp_sink(port):
    """Receive and drop datagrams (a statsd stand-in); count packets and lines."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    counts = {"packets": 0, "lines": 0}

    def run():
        while True:
            data = sock.recv(65536)
            counts["packets"] += 1
            counts["lines"] += data.count(b"\n") + 1
    threading.Thread(target=run, daemon=True).start()
    return counts


def serve(scenario, port, env, log, statsd_port, prod_max_requests=None):
    env = dict(env, PEREGRINE_BIND=f"127.0.0.1:{port}", PEREGRINE_WORKERS="1",
               PEREGRINE_WORKER_CLASS="peregrine", PEREGRINE_RATE_LIMIT_PER_MINUTE="0",
               PEREGRINE_LOG_LEVEL="warning" if scenario == "off" else "info")
    env.pop("PEREGRINE_STATSD_ADDR", None)
    if scenario in ("log+statsd", "prod"):
        env["PEREGRINE_STATSD_ADDR"] = f"127.0.0.1:{statsd_port}"
    extra = ["--max-requests", "0", "--max-requests-jitter", "0"]
    if scenario == "prod":
        extra = ([] if prod_max_requests is None else
                 ["--max-requests", str(prod_max_requests), "--max-requests-jitter", "0"])
    return subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "app", "serve", "--", *extra],
        cwd=ROOT, env=env, stdout=log, stderr=log)


def run(scenario, env, args, statsd_port, tmp):
    port = free_port()
    log_path = os.path.join(tmp, f"{scenario}.log")
    with open(log_path, "wb") as log:
        server = serve(scenario, port, env, log, statsd_port, args.prod_max_requests)
    try:
        wait_until_serving(port, "/healthz", deadline=30)
        url = f"http://127.0.0.1:{port}/healthz"
        wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}"]
        subprocess.run(wrk + ["-d2s", url], check=True, capture_output=True)
        before = tree_cpu_seconds(server.pid)
        out = subprocess.run(wrk + [f"-d{args.duration}s", "--latency", url],
                             check=True, capture_output=True, text=True).stdout
        result = parse_wrk(out)
        result["cpu_us"] = (tree_cpu_seconds(server.pid) - before) / result["requests"] * 1e6
        return result
    finally:
        server.terminate()
        server.wait(timeout=40)
        with open(log_path, "rb") as f:
            result_lines = f.read().count(b'"msg":"request"')
        os.unlink(log_path)
        if scenario != "off":
            print(f"  {scenario}: {result_lines} request log lines", file=sys.stderr)


CALLGRIND_SCENARIOS = ("off", "log+statsd")


def drive_in_process(requests):
    """Serve ``requests`` /healthz requests through the WSGI app, in this process."""
    from app.factory import create_app

    app = create_app()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "QUERY_STRING": "",
               "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "bench", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}

    def start_response(status, headers, exc_info=None):
        pass

    for _ in range(requests):
        request = dict(environ)
        request["wsgi.input"] = io.BytesIO()
        for _chunk in app(request, start_response):
            pass


def callgrind_instructions(scenario, requests, tmp):
    """Instructions valgrind counted for the whole process serving ``requests``."""
    env = dict(os.environ,
               PEREGRINE_DATABASE_URL="postgresql://bench@127.0.0.1:9/bench",  # never reached
               PEREGRINE_MEMCACHED_SERVERS="127.0.0.1:9",
               PEREGRINE_JWT_SECRET="callgrind-" + "x" * 40,
               PEREGRINE_RATE_LIMIT_PER_MINUTE="0",
               PEREGRINE_LOG_LEVEL="warning" if scenario == "off" else "info",
               PYTHONPATH=ROOT)  # this checkout's app, whatever the venv has installed
    env.pop("PEREGRINE_STATSD_ADDR", None)
    if scenario != "off":
        env["PEREGRINE_STATSD_ADDR"] = f"127.0.0.1:{free_port()}"
    log = os.path.join(tmp, "valgrind.log")
    with open(os.path.join(tmp, f"{scenario}-{requests}.stderr"), "wb") as stderr:
        subprocess.run(["valgrind", "--tool=callgrind", f"--log-file={log}",
                        f"--callgrind-out-file={os.path.join(tmp, 'callgrind.out')}",
                        sys.executable, __file__, "--in-process", str(requests)],
                       cwd=ROOT, env=env, stderr=stderr, check=True)
    with open(log) as f:
        return int(re.search(r"Collected : (\d+)", f.read()).group(1))


def callgrind_main(args):
    """Print instructions per /healthz request for each in-process scenario."""
    n = args.callgrind_requests
    per_request = {}
    with tempfile.TemporaryDirectory(prefix="peregrine-callgrind-") as tmp:
        for scenario in CALLGRIND_SCENARIOS:
            once = callgrind_instructions(scenario, n, tmp)
            twice = callgrind_instructions(scenario, 2 * n, tmp)
            per_request[scenario] = (twice - once) / n
            print(f"{scenario:11} {per_request[scenario]:9,.0f} instructions/request "
                  f"({once:,} for {n}, {twice:,} for {2 * n})", file=sys.stderr)
    base = per_request["off"]
    print(f"\n{'scenario':12} {'instr/req':>10} {'vs off':>7}   (callgrind, in-process, "
          f"{n} vs {2 * n} requests)")
    for scenario, count in per_request.items():
        print(f"{scenario:12} {count:10,.0f} {count / base:6.2f}x")


def main():
    if sys.argv[1:2] == ["--in-process"]:  # the process callgrind measures
        drive_in_process(int(sys.argv[2]))
        return
    parser = base_parser(__doc__)
    parser.set_defaults(rounds=3)
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--prod-max-requests", type=int, default=None,
                        help="run prod with this max_requests (jitter 0) instead of the "
                             "config's, to measure what one recycle costs")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per request in-process instead (no stack)")
    parser.add_argument("--callgrind-requests", type=int, default=5000)
    args = parser.parse_args()
    if args.callgrind:
        callgrind_main(args)
        return
    if not os.environ.get("PEREGRINE_DATABASE_URL"):
        sys.exit("needs a running stack: "
                 'eval "$(taskset -c 1 .venv/bin/python -m app services up)"')
    # This process (the statsd sink's thread) stays off the worker's core.
    os.sched_setaffinity(0, {1})
    statsd_port = free_port()
    sink = udp_sink(statsd_port)
    runs = {s: [] for s in args.scenarios}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="peregrine-overhead-") as tmp:
        for r in range(args.rounds):
            for scenario in args.scenarios:
                result = run(scenario, dict(os.environ), args, statsd_port, tmp)
                failed += result["non_2xx"] + result["socket_errors"]
                runs[scenario].append(result)
                print(f"round {r + 1} {scenario:11} {result['rps']:8.0f} req/s "
                      f"{result['cpu_us']:6.1f} us/req p99 {result['p99_ms']:.2f} ms",
                      file=sys.stderr)
    base = statistics.median(r["rps"] for r in runs.get("off", [])) if "off" in runs else None
    base_cpu = statistics.median(r["cpu_us"] for r in runs["off"]) if "off" in runs else None
    print(f"\n{'scenario':12} {'req/s':>8} {'CPU us/req':>10} {'p99 ms':>8} "
          f"{'vs off':>7} {'CPU vs off':>10}   (medians of {args.rounds})")
    for scenario, results in runs.items():
        rps = statistics.median(r["rps"] for r in results)
        cpu = statistics.median(r["cpu_us"] for r in results)
        p99 = statistics.median(r["p99_ms"] for r in results)
        vs = f"{rps / base:.2f}x" if base else "-"
        vs_cpu = f"{cpu / base_cpu:.2f}x" if base_cpu else "-"
        print(f"{scenario:12} {rps:8.0f} {cpu:10.1f} {p99:8.2f} {vs:>7} {vs_cpu:>10}")
    print(f"statsd sink: {sink['packets']} packets, {sink['lines']} metric lines")
    if failed:
        print(f"! {failed} failed requests")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
