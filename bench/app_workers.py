"""Compare gunicorn worker classes serving the real Peregrine app.

The measurement is ``bench/http_workers.py``'s (whose helpers this imports):
one worker pinned to CPU0, wrk pinned to CPU1, loopback only, a 2 s warm-up
and a bounded run per scenario, rounds interleaved across worker classes.
Each worker class serves three scenarios in turn:

``healthz``
    ``GET /healthz``: server layer, Falcon and the middleware; no I/O.
``product``
    ``GET /v1/products/{id}`` rotating over ``--ids`` product ids, with an
    ``Authorization: Bearer`` header as a signed-in client sends it: the
    memcached read-through path. The route is public, so the token rides
    along but is not verified; ``me`` covers verification.
``me``
    ``GET /v1/users/me``: the cheapest route that verifies the token (JWT
    check, principal) and then does real work, one primary-key query
    through the green Postgres pool.

Postgres and memcached come from the ``PEREGRINE_*`` exports when
``PEREGRINE_DATABASE_URL`` is set; otherwise the script starts its own, on
CPU1 (next to wrk, so CPU0 is the worker's alone), seeds them and stops them
at the end. Exits 1 if any request failed (non-2xx status or socket error).

Usage::

    .venv/bin/python bench/app_workers.py [--duration 10] [--rounds 2]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import contextmanager

from http_workers import (
    ROOT,
    base_parser,
    drive,
    free_port,
    keep_best,
    print_table,
    wait_until_serving,
    worker_pid,
)

WORKERS = ("gevent", "gevent_pywsgi", "peregrine")
SCENARIOS = ("healthz", "product", "me")
ROTATE_LUA = os.path.join(ROOT, "bench", "wrk", "rotate.lua")
PASSWORD = "peregrine-load-test"  # every seeded user's (app/manage/seed.py)


def cli(*argv, env=None, capture=False):
    """Run ``python -m app ...`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "app", *argv], cwd=ROOT, env=env,
                          check=True, text=True, capture_output=capture).stdout


@contextmanager
def services(args):
    """Yield the environment of a running Postgres + memcached."""
    if os.environ.get("PEREGRINE_DATABASE_URL"):
        yield dict(os.environ)
        return
    run_dir = tempfile.mkdtemp(prefix="peregrine-bench-")
    os.chmod(run_dir, 0o755)  # the servers run unprivileged when we are root
    env = dict(os.environ, PEREGRINE_RUN_DIR=run_dir)
    try:
        # taskset: the daemons (and every Postgres backend they fork) stay on CPU1.
        exports = subprocess.run(
            ["taskset", "-c", "1", sys.executable, "-m", "app", "services", "up"],
            cwd=ROOT, env=env, check=True, text=True, capture_output=True).stdout
        for line in exports.splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                env[name] = value.strip("'\"")
        cli("migrate", env=env, capture=True)
        cli("seed", "--products", str(args.products), "--users", "20", "--seed", "1",
            env=env, capture=True)
        yield env
    finally:
        cli("services", "down", env=env, capture=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def call(port, method, path, body=None, headers=()):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=dict(headers),
        data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def login(port, attempt):
    """An access token for a seeded user (valid 15 min: one per server start).

    Login is rate limited per IP+email; from loopback X-Real-IP is trusted as
    the client address, so each attempt presents a different one.
    """
    body = {"email": "user0@example.test", "password": PASSWORD}
    ip = f"10.99.{attempt // 250}.{attempt % 250 + 1}"
    return call(port, "POST", "/v1/auth/login", body, {"X-Real-IP": ip})["access_token"]


def write_product_paths(port, count, path):
    """Write ``count`` product paths, one per line, from the public listing."""
    paths, cursor = [], None
    while len(paths) < count:
        query = "/v1/products?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = call(port, "GET", query)
        paths += [f"/v1/products/{item['id']}" for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    with open(path, "w") as f:
        f.write("\n".join(paths[:count]) + "\n")


def serve(worker_class, port, env, log):
    """Start ``python -m app serve`` (gunicorn.conf.py) with one pinned worker."""
    env = dict(env, PEREGRINE_BIND=f"127.0.0.1:{port}", PEREGRINE_WORKERS="1",
               PEREGRINE_WORKER_CLASS=worker_class, PEREGRINE_LOG_LEVEL="warning",
               PEREGRINE_RATE_LIMIT_PER_MINUTE="0")
    # --max-requests 0: gunicorn.conf.py recycles a worker after 1-1.5M
    # requests, and a new worker means a new pid
    # (the CPU time is read from /proc/<pid>) and a cold cache and pool.
    return subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "app", "serve", "--",
         "--max-requests", "0", "--max-requests-jitter", "0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_worker(worker_class, env, args, state):
    """Serve with ``worker_class`` and run every scenario; return their results."""
    port = free_port()
    log_path = os.path.join(state["dir"], f"{worker_class}.log")
    with open(log_path, "ab") as log:
        server = serve(worker_class, port, env, log)
    try:
        try:
            wait_until_serving(port, "/healthz", deadline=30)
        except RuntimeError:
            with open(log_path) as f:
                sys.stderr.write(f.read()[-4000:])
            raise
        pid = worker_pid(server.pid)
        state["logins"] += 1
        auth = ["-H", f"Authorization: Bearer {login(port, state['logins'])}"]
        if not os.path.exists(state["paths"]):
            write_product_paths(port, args.ids, state["paths"])
        # scenario: (path, wrk options, arguments for the Lua script)
        plans = {
            "healthz": ("/healthz", [], []),
            "product": ("/", auth + ["-s", ROTATE_LUA], ["--", state["paths"]]),
            "me": ("/v1/users/me", auth, []),
        }
        results = {}
        for scenario in args.scenarios:
            path, wrk_args, script_args = plans[scenario]
            results[scenario] = drive(pid, f"http://127.0.0.1:{port}{path}", args,
                                      wrk_args, script_args)
        return results
    finally:
        server.terminate()
        server.wait(timeout=40)


def main():
    parser = base_parser(__doc__)
    parser.add_argument("--workers", nargs="+", default=WORKERS,
                        help="PEREGRINE_WORKER_CLASS values (default: %(default)s)")
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--ids", type=int, default=1000,
                        help="product ids the product scenario rotates over")
    parser.add_argument("--products", type=int, default=100_000,
                        help="products to seed when the script starts its own services")
    args = parser.parse_args()

    best = {scenario: {} for scenario in args.scenarios}
    with tempfile.TemporaryDirectory(prefix="peregrine-bench-") as tmp, \
            services(args) as env:
        state = {"dir": tmp, "paths": os.path.join(tmp, "paths.txt"), "logins": 0}
        for _ in range(args.rounds):
            for worker_class in args.workers:
                for scenario, result in run_worker(worker_class, env, args, state).items():
                    keep_best(best[scenario], worker_class, result)
    failed = 0
    for scenario in args.scenarios:
        print(f"\n{scenario}")
        failed += print_table(best[scenario])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
