"""Versioned SQL migrations: ``app/migrations/NNNN_name.sql``, applied in order.

Each file runs in its own transaction together with the row that records it,
under an advisory lock, so running ``migrate`` twice (or on two hosts at once)
applies every migration exactly once.

Migrations run while the previous release serves (deploy/ansible/README.md).
A statement that waits for a table lock makes every later statement on that
table queue behind it, so a migration waits for a lock at most
LOCK_TIMEOUT_MS, well inside the app's own lock_timeout (2 s, app/db.py),
and then rolls back and starts again; so it does after a deadlock, which a
migration locking several tables can meet with requests that lock them in
another order. The requests it held up go on at once, and nothing of the
migration is left half-applied.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every migrate run.
_LOCK_ID = 0x70657265  # "pere"

LOCK_TIMEOUT_MS = 500
ATTEMPTS = 20
RETRY_PAUSE_S = 0.5  # then 1 s, 1.5 s, ... capped at 3 s: requests get through between tries


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return found


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR, log=print,
            sleep: Callable[[float], None] = time.sleep) -> list[Migration]:
    """Apply pending migrations; return those applied."""
    applied = []
    conn = psycopg2.connect(dsn, application_name="peregrine-migrate", connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for migration in discover(directory):
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    if _apply(conn, migration, log):
                        applied.append(migration)
                    break
                except (psycopg2.errors.LockNotAvailable,
                        psycopg2.errors.DeadlockDetected) as ex:
                    if attempt == ATTEMPTS:
                        raise
                    pause = min(RETRY_PAUSE_S * attempt, 3.0)
                    what = ("a deadlock" if isinstance(ex, psycopg2.errors.DeadlockDetected)
                            else f"no lock within {LOCK_TIMEOUT_MS} ms")
                    log(f"  {migration.path.name}: {what} (tables in use by the running"
                        f" service); rolled back, trying again in {pause:.1f} s"
                        f" ({attempt}/{ATTEMPTS - 1})")
                    sleep(pause)
    finally:
        conn.close()
    return applied


def _apply(conn, migration: Migration, log) -> bool:
    """Run one migration in its own transaction; False when it was applied before."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,))
        if cur.fetchone():
            return False
        log(f"applying {migration.path.name}")
        cur.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        cur.execute(migration.path.read_text())
        cur.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
    return True
