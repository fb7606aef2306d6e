"""What the catalog-miss runs cost Postgres: CPU per request and transactions, per server.

The primary and each replica started by ``python -m app services up`` keep
their data under ``$PEREGRINE_RUN_DIR`` (``postgres/data``,
``replica-N/data``); a server's CPU is its postmaster's plus every backend's
(``/proc``: utime + stime, and the children that exited, cutime + cstime).
Transactions come from ``pg_stat_database`` on each server: a standby counts
the read-only transactions it served itself.
"""

import glob
import os

from bench.http_workers import cpu_seconds

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def servers(env: dict) -> dict:
    """``{"primary": (data dir, dsn), "replica-1": ...}`` of the running services."""
    run_dir = env["PEREGRINE_RUN_DIR"]
    found = {"primary": (os.path.join(run_dir, "postgres", "data"),
                         env["PEREGRINE_DATABASE_URL"])}
    urls = [u for u in env.get("PEREGRINE_DATABASE_REPLICA_URLS", "").split(",") if u]
    dirs = sorted(glob.glob(os.path.join(run_dir, "replica-*", "data")),
                  key=lambda d: int(d.split("replica-")[1].split(os.sep)[0]))
    for index, (data, url) in enumerate(zip(dirs, urls, strict=True), start=1):
        found[f"replica-{index}"] = (data, url)
    return found


def postmaster(data_dir: str) -> int:
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        return int(f.readline())


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def _exited_children_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS  # cutime, cstime


def cpu(data_dir: str) -> float:
    """CPU seconds of one Postgres server so far: the postmaster and its children."""
    root = postmaster(data_dir)
    total = cpu_seconds(root) + _exited_children_seconds(root)
    for child in _children(root):
        try:
            total += cpu_seconds(child)
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited between the listing and the read: counted in cutime next time
    return total


def transactions(dsn: str) -> int:
    import psycopg2  # the databases are the harness's fixtures here, not the app's

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                        " WHERE datname = current_database()")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def sample(found: dict) -> dict:
    return {name: {"cpu": cpu(data), "xacts": transactions(dsn)}
            for name, (data, dsn) in found.items()}


def per_request(before: dict, after: dict, requests: int) -> dict:
    """Each server's CPU µs and transactions per request between two samples."""
    n = max(requests, 1)
    # The sampling connection itself is one transaction on each server.
    return {name: {"cpu_us": (after[name]["cpu"] - before[name]["cpu"]) / n * 1e6,
                   "xacts_per_req": max(after[name]["xacts"] - before[name]["xacts"] - 1, 0) / n}
            for name in before}
