"""Versioned SQL migrations: ``app/migrations/NNNN_name.sql``, applied in order.

Each file runs in its own transaction together with the row that records it,
under an advisory lock, so running ``migrate`` twice (or on two hosts at once)
applies every migration exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every migrate run.
_LOCK_ID = 0x70657265  # "pere"


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


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR, log=print) -> list[Migration]:
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
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                cur.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                )
                if cur.fetchone():
                    continue
                log(f"applying {migration.path.name}")
                cur.execute(migration.path.read_text())
                cur.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied.append(migration)
    finally:
        conn.close()
    return applied
