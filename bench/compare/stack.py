"""The shared backing services: Postgres and memcached on CPU1, seeded once.

Started through Peregrine's CLI (``python -m app services up`` in a private
``PEREGRINE_RUN_DIR``, then ``migrate`` and ``seed``), so every server under
test reads the same database and cache. Also the statsd stand-in Peregrine's
metrics go to.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager

from bench.compare.servers import ROOT

# Products the order scenario buys from; their stock is raised so no order is refused.
ORDER_PRODUCTS = 200
AMPLE_STOCK = 1_000_000_000


def cli(*argv, env, cpu=None):
    """``python -m app ...`` from the repository root; returns its stdout."""
    command = [sys.executable, "-m", "app", *argv]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True,
                          check=False)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"python -m app {' '.join(argv)} exited {done.returncode}")
    return done.stdout


def exports(text: str) -> dict:
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            found[name] = value.strip("'\"")
    return found


@contextmanager
def services(products: int, users: int, replicas: int = 0):
    """Yield the environment of a fresh, seeded Postgres + memcached on CPU1.

    With ``replicas``, that many streaming replicas of that Postgres run next
    to it (on CPU1 too) and ``PEREGRINE_DATABASE_REPLICA_URLS`` lists them.
    """
    run_dir = tempfile.mkdtemp(prefix="peregrine-compare-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEREGRINE_")}
    env["PEREGRINE_RUN_DIR"] = run_dir
    try:
        # taskset: the daemons (and every Postgres backend they fork) stay on CPU1.
        env.update(exports(cli("services", "up", "--replicas", str(replicas), env=env, cpu=1)))
        cli("migrate", env=env, cpu=1)
        print(f"seeding {products:,} products and {users:,} users ...", file=sys.stderr)
        cli("seed", "--products", str(products), "--users", str(users), env=env, cpu=1)
        yield env
    finally:
        try:
            cli("services", "down", env=env)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def stock_up(env: dict) -> list[str]:
    """Give the first ORDER_PRODUCTS live products ample stock; return their ids."""
    import psycopg2  # the database is the harness's fixture here, not the app's

    with psycopg2.connect(env["PEREGRINE_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE products SET stock = %s WHERE id IN (SELECT id FROM products"
            " WHERE deleted_at IS NULL ORDER BY id LIMIT %s) RETURNING id::text",
            (AMPLE_STOCK, ORDER_PRODUCTS))
        ids = [row[0] for row in cur.fetchall()]
    conn.close()
    return ids


def subscribe_webhook(env: dict) -> None:
    """An enabled subscription to every event type, so each order also fans out a delivery.

    Nothing delivers during the run (no `deliver` process): the request path pays what
    a subscription adds (the delivery row and the NOTIFY), which is what is measured.
    """
    import base64
    import secrets

    import psycopg2

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with psycopg2.connect(env["PEREGRINE_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO webhook_subscriptions (url, events, description, secret)"
            " VALUES ('https://hooks.example.com/bench',"
            " ARRAY['order.placed', 'order.cancelled', 'product.updated'], 'bench', %s)",
            (secret,))
    conn.close()


def statsd_sink() -> tuple[int, dict]:
    """A UDP socket that reads and drops datagrams; returns its port and counters."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    counts = {"packets": 0, "bytes": 0}

    def drain():
        while True:
            data = sock.recv(65536)
            counts["packets"] += 1
            counts["bytes"] += len(data)
    threading.Thread(target=drain, daemon=True, name="statsd-sink").start()
    return sock.getsockname()[1], counts
