"""Where the deployed worker's time goes, per scenario: py-spy or perf under load.

Runs Peregrine as ``bench.compare`` does (``python -m app serve`` with the
production defaults: the shipped gunicorn config and worker, one request line
per request at ``info``, statsd on; one worker on CPU0) against a private,
seeded Postgres and memcached, drives one scenario with wrk from CPU1, and
prints the worker's user and system CPU per request. With a profiler it also
samples the worker during the measured run:

``--profiler py-spy``  Python stacks (``py-spy record --format raw``): prints
                       the functions with the largest share of the worker's
                       samples, inclusive and by line, and writes the
                       collapsed stacks (flamegraph.pl / speedscope input)
``--profiler perf``    native stacks (``perf record -g``): prints ``perf
                       report``'s top symbols, kernel included, and keeps
                       ``perf.data``

Scenarios: ``product`` (the cached product read over 1,000 ids), ``list``
(the cached list page over every category), ``me`` (``GET /v1/users/me``),
``healthz``.

Usage (from the repository root; ~1 min)::

    .venv/bin/python bench/profiler.py --scenario product --profiler py-spy
    PEREGRINE_DB_POOL_SIZE=32 .venv/bin/python bench/profiler.py --scenario me

``PEREGRINE_*`` variables set by the caller reach the server (to try a
setting against the shipped one). py-spy comes with ``make bench-venv``
(``bench/.venv/bin/py-spy``); perf from ``apt-get install linux-perf``. Both
attach to the worker, which needs root or ``kernel.yama.ptrace_scope=0``
(py-spy) and ``kernel.perf_event_paranoid`` at most 1 (perf). Outputs go to
``bench/results/profile-<scenario>-<UTC time>.*`` (ignored by git).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.compare import client, measure, servers, stack
from bench.compare.session import Session

SCENARIOS = ("product", "list", "me", "healthz")
ROTATE_LUA = os.path.join(servers.ROOT, "bench", "wrk", "rotate.lua")
RESULTS = os.path.join(servers.ROOT, "bench", "results")
PY_SPY = os.path.join(servers.ROOT, "bench", ".venv", "bin", "py-spy")


def summarize(collapsed: str) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, [(function, samples it is on the stack)], [(frame line, samples on top)]).

    ``collapsed`` is py-spy's raw format: one ``frame;frame;...;frame N``
    line per distinct stack, outermost first. A function counts once per
    stack however often it recurses; the innermost frame, with its line,
    is where the sample's own time went. Both lists are largest first.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    on_top: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        for function in {_function(frame) for frame in frames}:
            inclusive[function] += samples
        on_top[frames[-1]] += samples
    return total, inclusive.most_common(), on_top.most_common()


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``."""
    name, paren, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if paren else frame


def print_summary(collapsed: str, top: int) -> None:
    total, inclusive, on_top = summarize(collapsed)
    if not total:
        print("py-spy recorded no samples")
        return
    print(f"\n{total:,} samples of the worker's threads (idle ones left out)")
    print(f"\n{'inclusive':>9}  function")
    for function, samples in inclusive[:top]:
        print(f"{100 * samples / total:8.1f}%  {function}")
    print(f"\n{'own':>9}  frame (line)")
    for frame, samples in on_top[:top]:
        print(f"{100 * samples / total:8.1f}%  {frame}")


def process_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def load(port: int, scenario: str, tmp: str) -> tuple[str, list, list]:
    """(url, wrk options, script arguments) of ``scenario``."""
    base = f"http://127.0.0.1:{port}"
    if scenario == "me":
        return (f"{base}/v1/users/me",
                ["-H", f"Authorization: Bearer {client.login(port, 0)}"], [])
    if scenario == "healthz":
        return f"{base}/healthz", [], []
    if scenario == "list":
        paths = [f"/v1/products?category={slug}&limit=20" for slug in client.category_slugs(port)]
    else:
        paths = [f"/v1/products/{i}" for i in client.product_ids(port, 1000)]
    listing = os.path.join(tmp, "paths")
    with open(listing, "w") as f:
        f.write("\n".join(paths) + "\n")
    return f"{base}/", ["-s", ROTATE_LUA], ["--", listing]


def start_profiler(kind: str, pid: int, seconds: int, rate: int, out: str):
    if kind == "py-spy":
        binary = PY_SPY if os.path.exists(PY_SPY) else shutil.which("py-spy")
        if binary is None:
            sys.exit("py-spy is missing: make bench-venv installs it into bench/.venv")
        command = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--duration",
                   str(seconds), "--format", "raw", "--output", out, "--nonblocking"]
    else:
        if shutil.which("perf") is None:
            sys.exit("perf is missing: apt-get install linux-perf")
        command = ["perf", "record", "-F", str(rate), "-g", "-p", str(pid), "-o", out,
                   "--", "sleep", str(seconds)]
    # On CPU1 with wrk: the sampler must not take the worker's core.
    return subprocess.Popen(["taskset", "-c", "1", *command], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="product")
    parser.add_argument("--profiler", choices=("none", "py-spy", "perf"), default="none")
    parser.add_argument("--duration", type=int, default=12, help="seconds measured")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=400, help="samples per second")
    parser.add_argument("--top", type=int, default=30, help="rows of each table")
    parser.add_argument("--products", type=int, default=100_000)
    args = parser.parse_args()
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    for tool, package in (("wrk", "wrk"), ("taskset", "util-linux")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: `make bench-profile` installs it "
                     f"(or apt-get install {package})")

    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = os.path.join(RESULTS, f"profile-{args.scenario}-{stamp}."
                       + ("txt" if args.profiler == "py-spy" else "perf.data"))
    statsd_port, _counts = stack.statsd_sink()
    overrides = {k: v for k, v in os.environ.items() if k.startswith("PEREGRINE_")}
    with stack.services(products=args.products, users=10) as env, \
            tempfile.TemporaryDirectory(prefix="peregrine-profile-") as tmp:
        server = servers.peregrine(statsd_port)
        server.env.update(overrides)
        with Session(server, env, tmp) as session:
            pid = session.pid
            url, options, script_args = load(session.port, args.scenario, tmp)
            measure.wrk(url, 3, args.connections, options, script_args)  # warm-up
            profiler = None
            if args.profiler != "none":
                profiler = start_profiler(args.profiler, pid, args.duration, args.rate, out)
                time.sleep(0.5)  # attached before the measured run starts
            user, system = process_cpu(pid)
            result = measure.wrk(url, args.duration, args.connections, options, script_args)
            user_after, system_after = process_cpu(pid)
            if profiler is not None:
                _, errors = profiler.communicate(timeout=args.duration + 60)
                if profiler.returncode:
                    sys.exit(f"{args.profiler} failed: {errors.strip()}")
    served = max(result["requests"], 1)
    print(f"{args.scenario}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms, "
          f"errors {result['non_2xx'] + result['socket_errors']}; worker CPU per request: "
          f"user {(user_after - user) / served * 1e6:.1f} us, "
          f"system {(system_after - system) / served * 1e6:.1f} us")
    if args.profiler == "py-spy":
        with open(out) as f:
            print_summary(f.read(), args.top)
    elif args.profiler == "perf":
        report = subprocess.run(["perf", "report", "-i", out, "--no-children", "--stdio",
                                 "-g", "none", "--sort", "dso,sym"],
                                capture_output=True, text=True, check=False)
        rows = [line for line in report.stdout.splitlines() if line.strip()
                and not line.startswith("#")]
        print("\n" + "\n".join(rows[:args.top]))
    if args.profiler != "none":
        print(f"\nwrote {os.path.relpath(out, servers.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
