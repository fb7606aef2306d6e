"""Instructions per request of the whole deployed worker (callgrind), per route.

req/s and CPU µs/request move with whatever else the machine runs;
instruction counts do not. This runs Peregrine exactly as ``bench.compare``
does (``python -m app serve``, the shipped gunicorn config and worker, one
request line per request at ``info``, statsd on, one worker) but under
``valgrind --tool=callgrind``, against private, seeded Postgres and
memcached, and counts what the worker process executes while it serves a
fixed number of keep-alive requests: the HTTP worker loop, the gevent hub,
Falcon, the middleware, the route, the request line and statsd, everything
but the kernel. The counters are zeroed after a warm-up and dumped after the
run (``callgrind_control``), so start-up and imports are not in it.

Scenarios:

=================  ============================================================
``healthz``        ``GET /healthz``
``product-near``   ``GET /v1/products/{id}``, one id: answered by the near cache
``product-cache``  ``GET /v1/products/{id}`` over 1,000 ids: under valgrind each
                   id comes back after the near entry's 0.5 s ttl, so every read
                   was a memcached hit; while the worker hears other nodes
                   (app/near_listener.py) an entry may live 3 s, so the
                   count is a mix of memcached and near hits
``list``           ``GET /v1/products?category=<slug>&limit=20`` over every
                   category (near cache, then memcached, as it falls)
``me``             ``GET /v1/users/me`` with an access token
``orders``         ``POST /v1/orders``, one line, each with its own
                   ``Idempotency-Key``, over 200 products with ample stock
=================  ============================================================

Usage (from the repository root; ~5 min)::

    .venv/bin/python bench/instructions.py [--scenarios product-near me] [--requests 1600]
    .venv/bin/python bench/instructions.py --costs-off --scenarios healthz
    .venv/bin/python bench/instructions.py --scenarios me --keep-dumps   # then callgrind_annotate

``--costs-off`` measures the same build with the request line, statsd and
recycling off (``PEREGRINE_LOG_LEVEL=warning``, no ``PEREGRINE_STATSD_ADDR``,
``--max-requests 0``): what the production defaults cost, in instructions.

Prints instructions per request per scenario and writes them to
``bench/results/instructions-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.compare import client, stack
from bench.compare.servers import ROOT, children

SCENARIOS = ("healthz", "product-near", "product-cache", "list", "me", "orders")
PORT = 18390


class Plan:
    """What one scenario sends: GETs over ``paths``, or a POST of ``bodies`` to ``paths[0]``."""

    def __init__(self, paths: list[str], headers: dict, bodies: list[bytes] | None = None):
        self.paths, self.headers, self.bodies = paths, headers, bodies
        self.sent = 0

    def request(self, index: int) -> tuple[str, str, bytes | None, dict]:
        if self.bodies is None:
            return "GET", self.paths[index % len(self.paths)], None, self.headers
        self.sent += 1  # one key per order, unique across the runs of this process
        headers = dict(self.headers, **{"Content-Type": "application/json",
                                        "Idempotency-Key": f"instr-{os.getpid()}-{self.sent}"})
        return "POST", self.paths[0], self.bodies[index % len(self.bodies)], headers


def order_body(product_id: str) -> bytes:
    return json.dumps({"items": [{"product_id": product_id, "quantity": 1}],
                       "shipping_address": {"line1": "1 Bench Street", "city": "Loadville",
                                            "postal_code": "12345", "country": "US"}}).encode()


def drive(port: int, plan: Plan, total: int, connections: int) -> int:
    """``total`` requests over ``connections`` keep-alive connections; returns the failures."""
    failures = []

    def one_connection(count: int, offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        bad = 0
        for i in range(count):
            method, path, body, headers = plan.request(offset + i)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            bad += response.status >= 400
        conn.close()
        failures.append(bad)

    per = total // connections
    threads = [threading.Thread(target=one_connection, args=(per, k * 7919))
               for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(failures)


def worker_pid(master: int) -> int:
    for _ in range(100):
        workers = children(master)
        if workers:
            return workers[0]
        time.sleep(0.2)
    raise RuntimeError("gunicorn started no worker")


def callgrind(*argv: str) -> None:
    subprocess.run(["callgrind_control", *argv], check=True, capture_output=True)


def dumped_instructions(out_dir: str, pid: int, before: set) -> tuple[int, str]:
    """The instruction count of the dump callgrind wrote since ``before``, and its path."""
    for _ in range(50):
        new = set(glob.glob(os.path.join(out_dir, f"callgrind.{pid}.*"))) - before
        if new:
            newest = max(new, key=os.path.getmtime)
            time.sleep(0.5)  # the dump is written in one go, but let it finish
            found = re.search(r"^summary: (\d+)", open(newest).read(), re.M)
            if found:
                return int(found.group(1)), newest
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def measure(port: int, pid: int, out_dir: str, plan: Plan, requests: int,
            connections: int) -> tuple[int, str, int]:
    warm = min(requests, max(2 * len(plan.paths), 2 * connections))
    failures = drive(port, plan, warm, connections)
    before = set(glob.glob(os.path.join(out_dir, f"callgrind.{pid}.*")))
    callgrind("-z", str(pid))
    failures += drive(port, plan, requests, connections)
    callgrind("-d", str(pid))
    instructions, dump = dumped_instructions(out_dir, pid, before)
    return instructions, dump, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--requests", type=int, default=1600, help="per scenario, measured")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--costs-off", action="store_true",
                        help="request line, statsd and recycling off (not the production defaults)")
    parser.add_argument("--keep-dumps", action="store_true",
                        help="copy each scenario's callgrind dump to bench/results/, for "
                             "callgrind_annotate or kcachegrind")
    args = parser.parse_args()
    requests = args.requests - args.requests % args.connections
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench/instructions.py needs {' and '.join(missing)}: apt-get install valgrind")

    statsd_port, _counts = stack.statsd_sink()
    results = {}
    results_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(results_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    with stack.services(products=2000, users=20) as env, \
            tempfile.TemporaryDirectory(prefix="peregrine-instructions-") as out_dir:
        stocked = stack.stock_up(env)
        env = dict(env, PEREGRINE_WORKERS="1", PEREGRINE_RATE_LIMIT_PER_MINUTE="0",
                   PEREGRINE_LOG_LEVEL="info", PEREGRINE_STATSD_ADDR=f"127.0.0.1:{statsd_port}",
                   PEREGRINE_BIND=f"127.0.0.1:{PORT}", PYTHONPATH=ROOT)
        extra = []
        if args.costs_off:
            env["PEREGRINE_LOG_LEVEL"] = "warning"
            del env["PEREGRINE_STATSD_ADDR"]
            extra = ["--", "--max-requests", "0"]
        log = open(os.path.join(out_dir, "server.log"), "w")
        server = subprocess.Popen(
            ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--trace-children=yes",
             f"--callgrind-out-file={out_dir}/callgrind.%p",
             f"--log-file={out_dir}/valgrind.%p.log", sys.executable, "-m", "app", "serve",
             *extra],
            cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    client.call(PORT, "GET", "/healthz")
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the server did not start: {out_dir}/server.log") from None
                    time.sleep(2)
            pid = worker_pid(server.pid)
            ids = client.product_ids(PORT, 1000)
            bearer = {"Authorization": f"Bearer {client.login(PORT, 0)}"}
            plans = {
                "healthz": Plan(["/healthz"], {}),
                "product-near": Plan([f"/v1/products/{ids[0]}"], {}),
                "product-cache": Plan([f"/v1/products/{i}" for i in ids], {}),
                "list": Plan([f"/v1/products?category={slug}&limit=20"
                              for slug in client.category_slugs(PORT)], {}),
                "me": Plan(["/v1/users/me"], bearer),
                "orders": Plan(["/v1/orders"], bearer, [order_body(i) for i in stocked]),
            }
            print(f"{'scenario':15} {'instructions/request':>21}", flush=True)
            for name in args.scenarios:
                instructions, dump, failures = measure(PORT, pid, out_dir, plans[name],
                                                       requests, args.connections)
                if failures:
                    raise RuntimeError(f"{name}: {failures} requests failed")
                results[name] = round(instructions / requests)
                kept = ""
                if args.keep_dumps:
                    kept = os.path.join(results_dir, f"callgrind-{name}-{stamp}.out")
                    shutil.copyfile(dump, kept)
                    kept = f"   {os.path.relpath(kept, ROOT)}"
                print(f"{name:15} {results[name]:>21,}{kept}", flush=True)
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
    path = os.path.join(results_dir, f"instructions-{stamp}.json")
    with open(path, "w") as out:
        json.dump({"requests": requests, "connections": args.connections,
                   "configuration": "costs off" if args.costs_off else "production defaults",
                   "instructions_per_request": results}, out, indent=2)
    print(f"wrote {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
