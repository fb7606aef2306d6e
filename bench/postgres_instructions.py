"""Instructions PostgreSQL executes per ``place_order()`` call (callgrind).

The orders scenario is bound by Postgres, on the core it shares with the load
generator and memcached, and its CPU per order moves with whatever else the
host runs. Instruction counts do not. This builds a private cluster as
``python -m app services up`` does, migrates it with this checkout's
migrations, seeds it, stops it, and then runs a single-user backend
(``postgres --single``) under ``valgrind --tool=callgrind`` on two scripts of
one-line orders, each with its own Idempotency-Key, as ``POST /v1/orders``
sends them (app/queries/orders.py ``_PLACE``). The difference of the two
totals divided by the difference of their calls is the count per order:
start-up, catalog loading and the first calls' plan caching cancel out.

A single-user backend commits and plans as a server backend does; what it
leaves out is the network (the protocol messages and their syscalls) and the
other processes (WAL writer, checkpointer).

Usage (from the repository root; ~1 min)::

    .venv/bin/python bench/postgres_instructions.py [--calls 200] [--keep-dumps]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app.manage import services  # noqa: E402

ADDRESS = ('{"line1":"1 Main St","city":"Springfield","postal_code":"12345",'
           '"country":"US"}')
BASE_CALLS = 50  # the shorter script: what both scripts share beyond their calls
WARM_ORDERS = 2000  # placed before the count, so the tables are not empty


def script(user_id: str, product_id: str, calls: int, tag: str) -> str:
    """``calls`` one-line orders as app/queries/orders.py sends them, one per line."""
    lines = []
    for i in range(calls):
        lines.append(
            f"SELECT place_order('{user_id}', 'bench-{tag}-{i}', '\\x00'::bytea,"
            f" ARRAY['{product_id}']::text[], ARRAY[1]::integer[], '{ADDRESS}');")
    return "\n".join(lines) + "\n"


def prepare(run_dir: str) -> tuple[str, str, str, str]:
    """A migrated, seeded, stopped cluster: (data dir, owner, user id, product id)."""
    env = dict(os.environ, PEREGRINE_RUN_DIR=run_dir)
    python = sys.executable
    up = subprocess.run([python, "-m", "app", "services", "up"], cwd=ROOT, env=env,
                        capture_output=True, text=True, check=True).stdout
    for line in up.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = value.strip("'\"")
    try:
        for command in (["migrate"], ["seed", "--products", "20000", "--users", "1000"]):
            subprocess.run([python, "-m", "app", *command], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        psql = [services._pg_bin("psql"), env["PEREGRINE_DATABASE_URL"], "-Atq", "-c"]
        user_id = subprocess.run(psql + ["SELECT id FROM users ORDER BY id LIMIT 1"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        product_id = subprocess.run(
            psql + ["SELECT id FROM products WHERE deleted_at IS NULL ORDER BY id LIMIT 1"],
            capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(psql + [f"UPDATE products SET stock = 1000000000 WHERE id = '{product_id}'"],
                       check=True)
        # A database in use: orders and Idempotency-Key records there already,
        # and statistics as autovacuum keeps them. The planner picks its scans
        # by them (an index on a table it knows to be empty is not worth it).
        subprocess.run(psql + [
            f"SELECT count(place_order('{user_id}', 'warm-' || i, '\\x00'::bytea,"
            f" ARRAY['{product_id}']::text[], ARRAY[1]::integer[], '{ADDRESS}'))"
            f" FROM generate_series(1, {WARM_ORDERS}) i"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(psql + ["ANALYZE"], check=True)
    finally:
        subprocess.run([python, "-m", "app", "services", "down"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    # Where `services up` put the cluster (app/manage/services.py PostgresServer).
    data_dir = str(services.PostgresServer(Path(run_dir) / "postgres", 1).data)
    user = services._service_user()
    return data_dir, (user.pw_name if user else ""), user_id, product_id


def instructions(data_dir: str, owner: str, sql: str, out: str) -> int:
    """Total Ir of one single-user backend running ``sql``."""
    os.chmod(os.path.dirname(out), 0o777)  # the backend's account writes the dump
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               services._pg_bin("postgres"), "--single", "-D", data_dir, "-j", "peregrine"]
    if owner:
        command = ["runuser", "-u", owner, "--"] + command
    done = subprocess.run(command, input=sql, capture_output=True, text=True)
    if done.returncode or "ERROR:" in done.stdout:
        errors = [line for line in done.stdout.splitlines() if "ERROR" in line]
        raise SystemExit(f"the backend failed ({done.returncode}): "
                         f"{errors[:3] or done.stderr[-2000:]}")
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200,
                        help="orders counted (the longer script has BASE_CALLS more)")
    parser.add_argument("--keep-dumps", action="store_true",
                        help="copy the callgrind dumps to bench/results/ (callgrind_annotate)")
    args = parser.parse_args(argv)
    for tool in ("valgrind",) + (("runuser",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install valgrind")
    with tempfile.TemporaryDirectory(prefix="peregrine-pg-ir-") as tmp:
        print("building a private cluster (migrate, seed) ...", file=sys.stderr)
        data_dir, owner, user_id, product_id = prepare(os.path.join(tmp, "run"))
        counts = {}
        for calls in (BASE_CALLS, BASE_CALLS + args.calls):
            print(f"{calls} orders under callgrind ...", file=sys.stderr)
            out = os.path.join(tmp, f"callgrind-{calls}.out")
            counts[calls] = instructions(data_dir, owner,
                                         script(user_id, product_id, calls, str(calls)), out)
            if args.keep_dumps:
                os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
                shutil.copy(out, os.path.join(ROOT, "bench", "results",
                                              f"postgres-orders-{calls}.callgrind"))
        per_order = (counts[BASE_CALLS + args.calls] - counts[BASE_CALLS]) / args.calls
        print(f"place_order(): {per_order:,.0f} instructions per order "
              f"(PostgreSQL single-user backend, callgrind; {BASE_CALLS + args.calls} - "
              f"{BASE_CALLS} calls)")


if __name__ == "__main__":
    main()
