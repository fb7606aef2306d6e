"""Compare gunicorn worker classes on one pinned core with wrk.

Each worker class serves ``bench/hello_app.py`` (one gunicorn worker pinned
to CPU0) while wrk, pinned to CPU1, drives it over loopback for a bounded
time. Prints requests/s, p50/p99 latency and the worker's CPU time per
request; the last is the steadier number on a shared machine, because it
does not move when another process steals the core. Exits 1 if any request
failed (non-2xx status or socket error).

``bench/app_workers.py`` runs the same measurement against the real app and
imports the helpers below.

Usage::

    .venv/bin/python bench/http_workers.py [--duration 10] [--rounds 1]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")

WORKERS = ("gevent", "gevent_pywsgi", "hotpath.worker.GeventHTTPWorker")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(port, path="/hello", deadline=15.0):
    request = f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not serve on port {port}")


def worker_pid(master_pid):
    path = f"/proc/{master_pid}/task/{master_pid}/children"
    for _ in range(100):
        with open(path) as f:
            children = f.read().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("no gunicorn worker process")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def parse_wrk(text):
    def latency(pct):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", text).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    # wrk counts statuses >= 400 here (despite the wording) ...
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    # ... and connect/read/write/timeout failures on a separate line.
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                        r"timeout (\d+)", text)
    return {
        "rps": rps,
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "requests": requests,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, sockets.groups())) if sockets else 0,
    }


def drive(pid, url, args, wrk_args=(), script_args=()):
    """Warm up for 2 s, then run wrk for ``args.duration`` s against ``url``.

    ``pid`` is the worker whose CPU time is charged to the measured requests;
    ``script_args`` go after the URL, where wrk hands them to a Lua init().
    """
    wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", *wrk_args]
    subprocess.run(wrk + ["-d2s", url, *script_args], check=True, capture_output=True)
    before = cpu_seconds(pid)
    out = subprocess.run(wrk + [f"-d{args.duration}s", "--latency", url, *script_args],
                         check=True, capture_output=True, text=True).stdout
    result = parse_wrk(out)
    result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6
    return result


def keep_best(best, key, result):
    """Keep the run with the most requests/s, but count the errors of every run."""
    kept = best.get(key)
    errors = {f: result[f] + (kept[f] if kept else 0) for f in ("non_2xx", "socket_errors")}
    if kept is None or result["rps"] > kept["rps"]:
        best[key] = result
    best[key].update(errors)


def print_table(best, baseline="gevent"):
    """Print one row per worker class; return how many requests failed."""
    base = best.get(baseline)
    print(f"{'worker class':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'CPU us/req':>10} {'vs ' + baseline:>9}")
    failed = 0
    for worker_class, r in best.items():
        ratio = f"{r['rps'] / base['rps']:.2f}x" if base else "-"
        print(f"{worker_class:34} {r['rps']:9.0f} {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['cpu_us']:10.1f} {ratio:>9}")
        if r["non_2xx"] or r["socket_errors"]:
            print(f"  ! {r['non_2xx']} non-2xx responses, {r['socket_errors']} socket errors")
            failed += r["non_2xx"] + r["socket_errors"]
    return failed


def run_one(worker_class, args):
    port = free_port()
    # cwd=bench: gunicorn would otherwise load the repo's gunicorn.conf.py.
    server = subprocess.Popen(
        ["taskset", "-c", "0", GUNICORN, "--no-control-socket", "-w", "1",
         "-k", worker_class, "-b", f"127.0.0.1:{port}", "hello_app:app"],
        cwd=HERE, env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(port, args.path)
        return drive(worker_pid(server.pid), f"http://127.0.0.1:{port}{args.path}", args)
    finally:
        server.terminate()
        server.wait(timeout=40)


def base_parser(doc: str) -> argparse.ArgumentParser:
    """The options every worker benchmark shares: run length, load, rounds."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per worker class, interleaved; the best is kept")
    return parser


def main():
    parser = base_parser(__doc__)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--workers", nargs="+", default=WORKERS)
    args = parser.parse_args()

    best = {}
    for _ in range(args.rounds):
        for worker_class in args.workers:
            keep_best(best, worker_class, run_one(worker_class, args))
    sys.exit(1 if print_table(best) else 0)


if __name__ == "__main__":
    main()
