"""Catalog reads through a real streaming replica, never older than a write answered.

Every test here runs against a real hot standby of the test Postgres (the
session ``replica`` fixture): lag is made with ``pg_wal_replay_pause()``,
failure with ``pg_ctl stop -m immediate``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg2
import pytest

from app.config import Config, ConfigError
from app.manage.services import LocalStack
from app.replicas import LSN_KEY, Replicas, lsn_number, lsn_text
from tests.support.http import request
from tests.support.metrics import CountingMetrics
from tests.support.replicas import (
    admin_query,
    pause_replay,
    resume_replay,
    wait_caught_up,
)

# -- helpers -------------------------------------------------------------------


def replica_status(server) -> dict:
    ready = request(server.url + "/readyz")
    assert ready.status == 200, ready.body
    (status,) = ready.json["replicas"]
    return status


def wait_for_status(server, wanted: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = replica_status(server)
        if status["status"] == wanted:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"replica never became {wanted}: {status}")
        time.sleep(0.1)


def api(server, method, path, admin=None, body=None):
    return request(server.url + path, method, body=body,
                   headers=admin["headers"] if admin else None)


def create_product(server, admin, **fields):
    body = {"sku": f"R-{uuid.uuid4().hex[:12]}", "name": "Replica Hammer", "price": "10.00",
            "stock": 5, **fields}
    result = api(server, "POST", "/v1/products", admin, body)
    assert result.status == 201, result.body
    return result.json


def product(server, product_id):
    return api(server, "GET", f"/v1/products/{product_id}")


def search(server, q):
    result = api(server, "GET", f"/v1/products?q={q}")
    assert result.status == 200, result.body
    return {item["id"]: item for item in result.json["items"]}


@pytest.fixture
def flush(memcached):
    from pymemcache.client.base import Client

    def flush_all():
        client = Client(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1)
        client.flush_all(noreply=False)
        client.close()

    return flush_all


@pytest.fixture
def replicated(live_server_factory, replica, db):
    """Start a gunicorn server reading through the replica (in rotation when returned)."""
    servers = []

    def start(**env):
        wait_caught_up(replica)  # the test's TRUNCATE, so the replica is in step
        server = live_server_factory("app.wsgi:application",
                                     PEREGRINE_DATABASE_REPLICA_URLS=replica.dsn(), **env)
        wait_for_status(server, "ok")
        servers.append(server)
        return server

    yield start
    if not replica.running():
        replica.start()
    resume_replay(replica)


# -- configuration ---------------------------------------------------------------

BASE = {"PEREGRINE_DATABASE_URL": "postgresql://p@db/peregrine",
        "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211",
        "PEREGRINE_JWT_SECRET": "s" * 40}


def test_replica_settings_default_to_none_and_are_validated_by_name():
    config = Config.from_env(BASE)
    assert config.database_replica_urls == () and config.replica_pool_size < config.db_pool_size
    config = Config.from_env({**BASE, "PEREGRINE_DATABASE_REPLICA_URLS":
                              " postgresql://p@r1/peregrine,postgresql://p@r2:5433/peregrine",
                              "PEREGRINE_REPLICA_POOL_SIZE": "2",
                              "PEREGRINE_REPLICA_MAX_LAG": "1.5"})
    assert config.database_replica_urls == ("postgresql://p@r1/peregrine",
                                            "postgresql://p@r2:5433/peregrine")
    assert (config.replica_pool_size, config.replica_max_lag) == (2, 1.5)
    for name, value in [("PEREGRINE_DATABASE_REPLICA_URLS", "postgresql://p@r1/x,"),
                        ("PEREGRINE_DATABASE_REPLICA_URLS", "r1:5432"),
                        ("PEREGRINE_DATABASE_REPLICA_URLS", "postgresql://p@r/x,postgresql://p@r/x"),
                        ("PEREGRINE_REPLICA_POOL_SIZE", "0"),
                        ("PEREGRINE_REPLICA_MAX_LAG", "soon")]:
        with pytest.raises(ConfigError) as raised:
            Config.from_env({**BASE, name: value})
        assert raised.value.name == name


def test_lsn_text_round_trips_in_order():
    assert lsn_number("0/3000000") < lsn_number("0/3000001") < lsn_number("1/0")
    assert lsn_text(lsn_number("16/B374D848")) == "16/B374D848"


# -- routing ---------------------------------------------------------------------


def test_cache_misses_are_served_by_the_replica(replicated, replica, admin, flush):
    server = replicated()
    made = [create_product(server, admin, name=f"Spanner {i}") for i in range(3)]
    wait_caught_up(replica)
    flush()  # and the mark with it: the health loop re-seeds it within a second
    time.sleep(1.5)
    before = replica_status(server)["served"]
    for item in made:
        assert product(server, item["id"]).json["name"] == item["name"]
    for i in range(20):
        search(server, f"cold{i}")  # a new list key each time: all misses
    served = replica_status(server)["served"] - before
    assert served >= 23, replica_status(server)
    # And what the replica answered was its own: the rows exist there.
    (rows,) = admin_query(replica, "SELECT count(*) FROM products")
    assert rows == 3


def test_a_write_is_read_back_new_while_the_replica_replays_nothing(
        replicated, replica, admin, flush):
    server = replicated()
    first = create_product(server, admin, name="Paused Pliers", price="5.00")
    wait_caught_up(replica)
    time.sleep(1.2)  # the mark from the write is behind the replica now
    assert product(server, first["id"]).json["price"] == "5.00"  # cached, from either side
    assert search(server, "Paused")[first["id"]]["price"] == "5.00"
    served = replica_status(server)["served"]
    assert served > 0, "the replica should have answered the cold reads above"

    pause_replay(replica)
    changed = api(server, "PATCH", f"/v1/products/{first['id']}", admin, {"price": "6.00"})
    assert changed.status == 200
    second = create_product(server, admin, name="Paused Pincers")

    # Through the cache: the write dropped the keys; the refill must not come
    # from the replica, which still has the old row and no second product.
    for _ in range(3):
        assert product(server, first["id"]).json["price"] == "6.00"
        assert product(server, second["id"]).status == 200
        listed = search(server, "Paused")
        assert listed[first["id"]]["price"] == "6.00" and second["id"] in listed
    # Around it: cold keys (flushed cache, mark gone and re-seeded).
    flush()
    for _ in range(3):
        assert product(server, first["id"]).json["price"] == "6.00"
        assert product(server, second["id"]).status == 200
        assert second["id"] in search(server, "Pincers")
        time.sleep(0.6)
    (behind,) = admin_query(replica, "SELECT count(*) FROM products WHERE id = %s",
                            (second["id"],))
    assert behind == 0, "replay should still be paused"
    status = replica_status(server)
    assert status["served"] == served and status["fallbacks"] > 0, status

    resume_replay(replica)
    wait_caught_up(replica)
    time.sleep(1.2)
    search(server, "after-resume")
    assert replica_status(server)["served"] > served


def test_a_lagging_replica_leaves_the_rotation_and_comes_back(replicated, replica, admin):
    server = replicated(PEREGRINE_REPLICA_MAX_LAG="0.5")
    pause_replay(replica)
    create_product(server, admin)
    # Replay timestamps only move with replayed commits: one more, then pause.
    status = wait_for_status(server, "degraded", timeout=10)
    assert "lagging" in status["reason"]
    ready = request(server.url + "/readyz")
    assert ready.status == 200 and ready.json["status"] == "ok"
    resume_replay(replica)
    wait_for_status(server, "ok", timeout=10)


def test_a_replica_stopped_hard_under_load_costs_no_errors(replicated, replica, admin):
    server = replicated(PEREGRINE_RATE_LIMIT_PER_MINUTE="0")  # the load comes from one IP
    items = [create_product(server, admin, name=f"Load Wrench {i}") for i in range(5)]
    wait_caught_up(replica)
    time.sleep(1.2)
    failures, done = [], threading.Event()
    counts = [0] * 4

    def hammer(worker: int):
        n = 0
        while not done.is_set():
            n += 1
            try:
                if n % 2:
                    result = api(server, "GET", f"/v1/products?q=load{worker}x{n}")
                else:
                    result = product(server, items[n % len(items)]["id"])
                if result.status != 200:
                    failures.append((result.status, result.body[:200]))
            except Exception as ex:  # noqa: BLE001 - a failure to count, not to raise here
                failures.append(repr(ex))
            counts[worker] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        served_before_stop = replica_status(server)["served"]
        replica.stop("immediate")
        time.sleep(3.0)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    assert served_before_stop > 0, "the load should have reached the replica"
    assert sum(counts) > 40
    status = replica_status(server)
    assert status["status"] == "degraded", status
    replica.start()
    wait_for_status(server, "ok", timeout=20)


def test_a_recovery_conflict_is_retried_on_the_primary(app, replica):
    """A 40001 recovery conflict on the replica's connection is answered by the primary.

    Forcing a genuine conflict depends on timing the startup process against
    a query (max_standby_streaming_delay, lock replay), which is not
    reliable on a loaded 2-core machine. So the replica's own server raises
    SQLSTATE 40001 with Postgres' conflict message from a DO block on the
    real standby connection: the driver, the pool and the retry see exactly
    what a real conflict produces.
    """
    deps = app.deps
    metrics = CountingMetrics()
    replicas = Replicas(deps.pool, deps.cache, [replica.dsn()], metrics=metrics)
    try:
        replicas.check()
        wait_caught_up(replica)
        replicas.check()
        (standby,) = replicas.replicas
        assert standby.healthy, standby.reason
        assert deps.cache.get(LSN_KEY) is not None

        def where(cur):
            cur.execute("SELECT pg_is_in_recovery()")
            return "replica" if cur.fetchone()[0] else "primary"

        assert replicas.read(where) == "replica"
        assert metrics[f"{standby.metric}.served"] == 1

        def conflicting(cur):
            cur.execute("SELECT pg_is_in_recovery()")
            if cur.fetchone()[0]:
                cur.execute("DO $$ BEGIN RAISE EXCEPTION 'canceling statement due to "
                            "conflict with recovery' USING ERRCODE = 'serialization_failure',"
                            " DETAIL = 'User query might have needed to see row versions "
                            "that must be removed.'; END $$")
            return "primary"

        assert replicas.read(conflicting) == "primary"
        assert metrics[f"{standby.metric}.recovery_conflict"] == 1
        assert metrics[f"{standby.metric}.fallback"] == 1
        assert not standby.healthy and standby.reason == "recovery conflict"
        assert replicas.read(where) == "primary"  # out of rotation until the next check
        replicas.check()
        assert standby.healthy and replicas.read(where) == "replica"
    finally:
        replicas.close()


def test_a_write_raises_the_mark_past_its_commit(app, replica, admin, client):
    deps = app.deps
    deps.catalog.use_replicas(Replicas(deps.pool, deps.cache, [replica.dsn()]))
    (before,) = admin_query(replica.primary, "SELECT pg_current_wal_insert_lsn()::text")
    result = client.simulate_post("/v1/products", headers=admin["headers"],
                                  json={"sku": "MARK-1", "name": "Mark", "price": "1.00"})
    assert result.status_code == 201
    (after,) = admin_query(replica.primary, "SELECT pg_current_wal_insert_lsn()::text")
    mark = int(deps.cache.get(LSN_KEY))
    # Read after the commit (past its record), before the answer.
    assert lsn_number(before) < mark <= lsn_number(after)
    deps.catalog.replicas.close()


# -- development stack -----------------------------------------------------------


def test_services_up_with_a_replica_streams_and_exports_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o755)
    stack = LocalStack(run)
    try:
        env = stack.up(replicas=1)
        (url,) = env["PEREGRINE_DATABASE_REPLICA_URLS"].split(",")
        config = Config.from_env(env)
        assert config.database_replica_urls == (url,)
        status = stack.status()
        assert status["replica-1"].startswith("running on 127.0.0.1:")
        state = json.loads((run / "services.json").read_text())
        (port,) = state["replica_ports"]
        standby = url.replace("peregrine@", "postgres@").rsplit("/", 1)[0] + "/postgres"
        conn = psycopg2.connect(standby)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery(), current_setting('hot_standby_feedback')")
            assert cur.fetchone() == (True, "on")
        conn.close()
        primary = env["PEREGRINE_DATABASE_URL"].replace("peregrine@", "postgres@")
        conn = psycopg2.connect(primary)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT slot_name, active FROM pg_replication_slots")
            assert cur.fetchall() == [("peregrine_replica_1", True)]
        conn.close()
        assert str(port) in url
        stack.down()
        assert stack.status()["replica-1"] == "stopped"
        # Kept across down/up, and streaming again even if the primary moved port.
        env = stack.up()
        assert len(env["PEREGRINE_DATABASE_REPLICA_URLS"].split(",")) == 1
        primary = env["PEREGRINE_DATABASE_URL"].replace("peregrine@", "postgres@")
        deadline = time.monotonic() + 20
        while True:
            conn = psycopg2.connect(primary)
            with conn, conn.cursor() as cur:
                cur.execute("SELECT state FROM pg_stat_replication")
                states = [row[0] for row in cur.fetchall()]
            conn.close()
            if states == ["streaming"]:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
        assert stack.up(replicas=0)["PEREGRINE_DATABASE_REPLICA_URLS"] == ""
        assert "replica-1" not in stack.status()
    finally:
        stack.down()
