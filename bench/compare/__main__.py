"""Peregrine vs the FastAPI and Granian peers: one table, ratios, targets.

Usage (from the repository root; ``make bench`` runs the same)::

    .venv/bin/python -m bench.compare [--duration 10] [--rounds 1] [--long]
                                      [--granian-threads 16 32]

Starts a private Postgres + memcached on CPU1 (``python -m app services up``),
seeds 100,000 products and 1,000 users, then serves each scenario from one
worker on CPU0 per server while wrk (64 connections) drives it from CPU1:

``product``  anonymous ``GET /v1/products/{id}`` over 1,000 ids, read-through cache
``me``       ``GET /v1/users/me``: verify the access token, one primary-key query
``list``     ``GET /v1/products?category=<slug>&limit=20`` over every category
``orders``   ``POST /v1/orders``, one line, ample stock (Peregrine only: the peers
             have no orders)
``miss``     the catalog-miss path (Peregrine only): list pages that miss the near
             cache and memcached on every request, so each is read from Postgres
``keepalive`` (only when asked for: ~1 min a round) one node as deployed, two workers
             behind the Ansible role's nginx (TLS): 10,000 keep-alive clients at
             2,000 req/s in all, on the cached product read (bench/compare/keepalive.py)

``--long`` adds Peregrine's worker RSS after 100,000 and 1,000,000 requests.
``--replicas N`` starts N streaming replicas next to Postgres: every scenario is
still measured against the primary alone, and ``miss`` once more with the app
reading through the replicas (``PEREGRINE_DATABASE_REPLICA_URLS``), with each
Postgres server's CPU and transactions per request.
Results go to bench/results/compare-<time>.json. Targets are reported, not
enforced: the exit status is 1 only if a run failed (a request error, a
server that did not serve, a peer whose body differs from Peregrine's).
"""

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from functools import partial

from bench.compare import client, keepalive, measure, report, servers, stack
from bench.compare import databases as db_costs
from bench.compare.session import Session

SCENARIOS = ("product", "me", "list", "orders", "miss")
ON_REQUEST = ("keepalive",)  # too long for every run
PEREGRINE_ONLY = ("orders", "miss", "keepalive")
DB_MEASURED = ("miss", "orders")  # Postgres' CPU per request is reported for these
ROTATE_LUA = os.path.join(servers.ROOT, "bench", "wrk", "rotate.lua")
ORDERS_LUA = os.path.join(servers.ROOT, "bench", "compare", "orders.lua")
MISS_LUA = os.path.join(servers.ROOT, "bench", "compare", "miss.lua")
REPLICA_URLS = "PEREGRINE_DATABASE_REPLICA_URLS"
RESULTS = os.path.join(servers.ROOT, "bench", "results")


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per server and scenario, interleaved; the best is kept")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--ids", type=int, default=1_000,
                        help="product ids the product scenario rotates over")
    parser.add_argument("--granian-threads", type=int, nargs="+", default=[16, 32],
                        help="Granian blocking-thread counts to measure (the best is compared)")
    parser.add_argument("--servers", nargs="+", default=["peregrine", "fastapi", "granian"],
                        choices=["peregrine", "fastapi", "granian"])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS),
                        choices=SCENARIOS + ON_REQUEST)
    parser.add_argument("--webhook-subscription", action="store_true",
                        help="subscribe a webhook to every event first (orders then fan out)")
    parser.add_argument("--replicas", type=int, default=0, metavar="N",
                        help="start N streaming replicas; measure the miss scenario "
                             "with and without them")
    parser.add_argument("--replica-pool-size", type=int, default=10, metavar="N",
                        help="the app's connections per replica in that run (default 10, the "
                             "primary's pool; the shipped 4 sends what does not fit to the "
                             "primary)")
    parser.add_argument("--long", action="store_true",
                        help="also Peregrine's worker RSS at 100k and 1M requests "
                             "(1M more requests: ~2 min at 10k req/s)")
    ka = parser.add_argument_group("keepalive scenario")
    ka.add_argument("--keepalive-connections", type=int, default=10_000)
    ka.add_argument("--keepalive-rate", type=int, default=2_000,
                    help="req/s offered by all connections together")
    ka.add_argument("--keepalive-seconds", type=int, default=30, help="measured seconds")
    ka.add_argument("--keepalive-cpus", choices=["split", "both"], default="split",
                    help="split: the node (app + nginx) on CPU0, as every scenario; both: "
                         "the node on both vCPUs, as a 2-vCPU node runs (wrk, Postgres "
                         "and memcached stay on CPU1)")
    ka.add_argument("--keepalive-ramp", type=float, default=10,
                    help="seconds over which the clients arrive, 1,000 at a time "
                         "(0: all at once)")
    ka.add_argument("--keepalive-warmup", type=int, default=25,
                    help="seconds from the first client to the measured run: every "
                         "connection opens (TCP + TLS) in it; what is sent in it is not "
                         "measured, but its errors count")
    return parser.parse_args()


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plans(files, token):
    auth = ["-H", f"Authorization: Bearer {token}"]
    return {  # scenario: (path, wrk options, Lua script arguments)
        "product": ("/", ["-s", ROTATE_LUA], ["--", files["products"]]),
        "me": ("/v1/users/me", auth, []),
        "list": ("/", ["-s", ROTATE_LUA], ["--", files["lists"]]),
        "orders": ("/v1/orders", auth + ["-s", ORDERS_LUA], ["--", files["order_ids"]]),
        "miss": ("/", ["-s", MISS_LUA], ["--", files["slugs"]]),
    }


def reference_paths(ids, slugs, token):
    return [("product", f"/v1/products/{ids[0]}", {}),
            ("list", f"/v1/products?category={slugs[0]}&limit=20", {}),
            ("me", "/v1/users/me", {"Authorization": f"Bearer {token}"})]


def bodies(port, paths):
    return {name: client.call(port, "GET", path, headers=h) for name, path, h in paths}


def run_scenarios(session, scenarios, plan, args, results, databases=None):
    """Measure each scenario; with ``databases`` (the miss path, orders) also Postgres'
    share."""
    for scenario in scenarios:
        path, options, script_args = plan[scenario]
        probe = None
        if databases is not None and scenario in DB_MEASURED:
            probe = partial(db_sample, databases)
        for attempt in (1, 2):
            try:
                result = measure.run(session.pid, session.url(path), args.duration,
                                     args.connections, options, script_args, probe=probe)
                break
            except measure.WorkerGone:
                # The shipped max_requests (1M + up to 500k) is reached within a few
                # scenarios at 40k req/s. The run it fell in cannot say what a request
                # cost the worker, so it is measured again on the new one.
                if attempt == 2:
                    raise
                print(f"  {scenario:8} {session.server.name:12} the worker was recycled "
                      f"(max_requests) during the run: measuring again", file=sys.stderr)
                session.worker_replaced()
        if probe is not None:
            before, after = result.pop("probe")
            result["databases"] = db_costs.per_request(before, after, result["requests"])
        keep_best(results.setdefault(scenario, {}), session.server.name, result)
        print(f"  {scenario:8} {session.server.name:12} {result['rps']:8.0f} req/s "
              f"p99 {result['p99_ms']:7.2f} ms {result['cpu_us']:7.1f} us/req "
              f"RSS {result['rss_mb']:5.1f} MB errors {result['errors']}", file=sys.stderr)


def db_sample(databases):
    # Backends report their counts when idle, at most once a second: let them.
    time.sleep(1.5)
    return db_costs.sample(databases)


def keep_best(runs, name, result):
    """Keep the round with the most req/s, but count the errors of every round."""
    kept = runs.get(name)
    if kept is not None:
        result_errors = result["errors"] + kept["errors"]
        if kept["rps"] >= result["rps"]:
            result = kept
        result["errors"] = result_errors
    runs[name] = result


def long_run(session, plan, args):
    """Drive the product scenario until the worker served 100k, then 1M requests.

    The shipped max_requests recycles a worker after 1M requests at the soonest
    (plus up to 500k of jitter), so the batches shrink near that mark and the run
    stops short of it, within about a second's worth of requests: the counts
    printed are what the worker served.
    """
    path, options, script_args = plan["product"]
    served, marks, pid, rate = 0, {}, session.pid, None
    for mark in (100_000, 1_000_000):
        last = mark == 1_000_000  # only this one must not be passed
        # Sized for a rate a quarter above the last batch's, since it varies.
        while served < mark and not (last and rate is not None and mark - served < 1.25 * rate):
            if rate is None:
                seconds = 2  # a short first batch learns the rate before one can pass a mark
            elif last:
                seconds = min(10, int((mark - served) // (1.25 * rate)))  # >= 1: the loop's test
            else:
                seconds = min(10, math.ceil((mark - served) / rate))
            result = measure.wrk(session.url(path), seconds, args.connections, options,
                                 script_args)
            served += result["requests"]
            rate = result["requests"] / seconds
            if result["non_2xx"] or result["socket_errors"]:
                raise RuntimeError(f"long run: {result['non_2xx']} non-2xx, "
                                   f"{result['socket_errors']} socket errors")
            if not measure.alive(pid):
                raise RuntimeError(f"the worker was recycled after ~{served:,} requests")
        marks[mark] = (served, measure.rss_mb(pid))
        print(f"  long     peregrine    {served:,} requests: RSS {marks[mark][1]:.1f} MB",
              file=sys.stderr)
    return {"requests_100k": marks[100_000][0], "rss_100k_mb": marks[100_000][1],
            "requests_1m": marks[1_000_000][0], "rss_1m_mb": marks[1_000_000][1]}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_ticks() -> tuple[int, int]:
    """(all ticks, steal ticks) of every CPU since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields[:8]), fields[7]  # user nice system idle iowait irq softirq steal


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of CPU time the hypervisor gave to other guests between two readings.

    On a shared VM a busy neighbour shows here (and, less visibly, in caches
    and memory bandwidth): req/s fall with it, so a run with steal above a
    few percent is one to redo.
    """
    total = after[0] - before[0]
    return 100.0 * (after[1] - before[1]) / total if total else 0.0


def versions():
    import hotpath.status
    return {"python": platform.python_version(), "hotpath": hotpath.status.describe(),
            "cpu": platform.processor() or platform.machine()}


def main():
    args = parse_args()
    os.sched_setaffinity(0, {1})  # the harness and the statsd sink stay off the worker's core
    for kind in ("fastapi", "granian"):
        if kind in args.servers:
            servers.ensure_peer_venv(kind)
    statsd_port, statsd = stack.statsd_sink()
    peregrine = servers.peregrine(statsd_port)
    peers = []
    if "fastapi" in args.servers:
        peers.append(servers.fastapi())
    if "granian" in args.servers:
        peers += [servers.granian(n) for n in args.granian_threads]
    reads = [s for s in args.scenarios if s not in PEREGRINE_ONLY]
    results, checks_failed, log_lines, started = {}, [], {}, time.time()
    load = {"start": loadavg()}
    ticks_at_start = cpu_ticks()
    long_result = None

    with tempfile.TemporaryDirectory(prefix="peregrine-compare-") as tmp, \
            stack.services(args.products, args.users, args.replicas) as services_env:
        # Every server reads from the primary alone, unless said otherwise below.
        env = {k: v for k, v in services_env.items() if k != REPLICA_URLS}
        databases = db_costs.servers(services_env)
        order_ids = stack.stock_up(env)
        if args.webhook_subscription:
            stack.subscribe_webhook(env)
        files = {name: os.path.join(tmp, f"{name}.txt")
                 for name in ("products", "lists", "order_ids", "slugs")}
        write_lines(files["order_ids"], order_ids)
        logins = 0

        for round_number in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_number + 1} of {args.rounds}", file=sys.stderr)
            # Peregrine first: it supplies the token, the ids and the reference bodies.
            with Session(peregrine, env, tmp) as session:
                logins += 1
                token = client.login(session.port, logins)
                ids = client.product_ids(session.port, args.ids)
                slugs = client.category_slugs(session.port)
                write_lines(files["products"], [f"/v1/products/{i}" for i in ids])
                write_lines(files["lists"],
                            [f"/v1/products?category={s}&limit=20" for s in slugs])
                write_lines(files["slugs"], slugs)
                paths = reference_paths(ids, slugs, token)
                reference = bodies(session.port, paths)
                plan = plans(files, token)
                if "peregrine" in args.servers:
                    run_scenarios(session, reads, plan, args, results)
            log_lines[f"peregrine-{round_number + 1}"] = session.request_lines

            for peer in peers:
                with Session(peer, env, tmp) as session:
                    got = bodies(session.port, paths)
                    for name in got:
                        if got[name] != reference[name]:
                            checks_failed.append(
                                f"{peer.name}: {name} body differs from Peregrine's")
                            print(f"! {peer.name} {name}: {got[name]!r:.300}\n  peregrine: "
                                  f"{reference[name]!r:.300}", file=sys.stderr)
                    run_scenarios(session, reads, plan, args, results)

        if "peregrine" in args.servers and "miss" in args.scenarios:
            # Fresh workers, so each run's RSS is its own: the primary alone, then
            # (with --replicas) the app reading through the replicas.
            runs = [(peregrine, env)]
            if args.replicas:
                runs.append((servers.peregrine(statsd_port, name=f"peregrine+{args.replicas}r"),
                             dict(env, **{REPLICA_URLS: services_env[REPLICA_URLS],
                                          "PEREGRINE_REPLICA_POOL_SIZE":
                                              str(args.replica_pool_size)})))
            for round_number in range(args.rounds):
                for server, server_env in runs:
                    with Session(server, server_env, tmp) as session:
                        run_scenarios(session, ["miss"], plan, args, results, databases)
                    log_lines[f"{server.name}-miss-{round_number + 1}"] = session.request_lines

        if "peregrine" in args.servers and "orders" in args.scenarios:
            with Session(peregrine, env, tmp) as session:
                logins += 1
                plan = plans(files, client.login(session.port, logins))
                run_scenarios(session, ["orders"], plan, args, results, databases)
            log_lines["peregrine-orders"] = session.request_lines
        if "peregrine" in args.servers and args.long:
            # A worker of its own, so that what it served is the long run's count alone.
            with Session(peregrine, env, tmp) as session:
                long_result = long_run(session, plan, args)
            log_lines["peregrine-long"] = session.request_lines

        if "peregrine" in args.servers and "keepalive" in args.scenarios:
            for round_number in range(args.rounds):
                result = keepalive.run(statsd_port, env, files["products"], args, tmp)
                results.setdefault("keepalive", {})[f"node-{round_number + 1}"] = result
                log_lines[f"node-keepalive-{round_number + 1}"] = result["request_log_lines"]
                print(f"  keepalive node-{round_number + 1}  {result['rps']:8.0f} req/s "
                      f"p99 {result['p99_ms']:7.2f} ms held {result['held_min']:,} "
                      f"errors {result['errors']}", file=sys.stderr)

    load["end"] = loadavg()
    load["steal_pct"] = round(steal_pct(ticks_at_start, cpu_ticks()), 1)
    failed_runs = [f"{scenario}/{name}: {r['errors']} errors"
                   for scenario, runs in results.items() for name, r in runs.items()
                   if r["errors"]]
    report.print_table(results)
    report.print_databases(results)
    report.print_keepalive(results)
    found = report.ratios(results)
    report.print_ratios(found)
    checks = report.targets(results, long_result)
    report.print_targets(checks)
    print(f"\nload average {load['start']} at the start, {load['end']} at the end; "
          f"CPU stolen by the hypervisor: {load['steal_pct']}%; "
          f"Peregrine request log lines: {log_lines}; statsd sink: {statsd['packets']} packets")
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, time.strftime("compare-%Y%m%d-%H%M%S.json", time.gmtime()))
    with open(out, "w") as f:
        json.dump({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                   "seconds": round(time.time() - started), "args": vars(args),
                   "versions": versions(), "load_average": load, "results": results,
                   "ratios": found, "targets": checks, "long": long_result,
                   "request_log_lines": log_lines, "statsd_packets": statsd["packets"],
                   "failures": checks_failed + failed_runs}, f, indent=2)
    print(f"wrote {os.path.relpath(out, servers.ROOT)}")
    for failure in checks_failed + failed_runs:
        print(f"! {failure}")
    sys.exit(1 if checks_failed or failed_runs else 0)


if __name__ == "__main__":
    main()
