"""A streaming replica of the test Postgres, and an app that reads through it.

The replica is a real hot standby (``pg_basebackup -R`` through a slot), so
the tests see real replay positions, real lag and a real hard stop.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2

from app.manage.services import PostgresServer, ReplicaServer
from app.replicas import lsn_number


def start_replica(primary: PostgresServer, run_dir: Path) -> ReplicaServer:
    replica = ReplicaServer(run_dir / "replica", primary, "peregrine_test_replica",
                            durable=False)
    replica.start()
    return replica


def admin_query(server: PostgresServer, sql: str, params=()):
    conn = psycopg2.connect(server.dsn(user="postgres"), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone() if cur.description else None
    finally:
        conn.close()


def wait_caught_up(replica: ReplicaServer, timeout: float = 15.0) -> None:
    """Until the replica has replayed everything the primary has inserted so far."""
    # The test primary runs with synchronous_commit=off: its WAL reaches the
    # disk, and so the standby, up to a wal_writer_delay after the commit.
    (target,) = admin_query(replica.primary, "SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (replayed,) = admin_query(replica, "SELECT pg_last_wal_replay_lsn()::text")
        if replayed is not None and lsn_number(replayed) >= lsn_number(target):
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica did not replay up to {target} in {timeout:.0f} s")


def pause_replay(replica: ReplicaServer) -> None:
    admin_query(replica, "SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 10
    while admin_query(replica, "SELECT pg_get_wal_replay_pause_state()")[0] != "paused":
        if time.monotonic() > deadline:
            raise AssertionError("replay did not pause")
        time.sleep(0.02)


def resume_replay(replica: ReplicaServer) -> None:
    admin_query(replica, "SELECT pg_wal_replay_resume()")
