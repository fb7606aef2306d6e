"""Migrations against a database in use: they give way to locks, and leave statistics.

Each test has a database of its own, and a second session plays the running
service: it holds a lock the migration needs, in an open transaction.
"""

from __future__ import annotations

import shutil

import psycopg2
import psycopg2.errors
import pytest

from app.manage import migrate as migrations
from tests.support.databases import scratch_database


@pytest.fixture
def own_database(postgres):
    with scratch_database(postgres, "migrate_check") as dsn:
        yield dsn


def query(dsn, sql, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


@pytest.fixture
def held_table(own_database, tmp_path):
    """A table the "service" is reading in an open transaction, and a migration that
    alters it."""
    query(own_database, "CREATE TABLE stock (id integer PRIMARY KEY)")
    (tmp_path / "0001_add_column.sql").write_text("ALTER TABLE stock ADD COLUMN extra integer;")
    service = psycopg2.connect(own_database)
    with service.cursor() as cur:
        # Should the migration wait without giving up, the test fails instead of hanging.
        cur.execute("SET idle_in_transaction_session_timeout = '10s'")
        cur.execute("SELECT count(*) FROM stock")  # ACCESS SHARE until the transaction ends
    yield own_database, service
    service.close()


def columns(dsn):
    return [row[0] for row in query(dsn, "SELECT attname FROM pg_attribute WHERE attrelid ="
                                         " 'stock'::regclass AND attnum > 0 ORDER BY attnum")]


def test_a_migration_that_waits_for_a_lock_rolls_back_and_tries_again(held_table, tmp_path):
    dsn, service = held_table
    log, pauses = [], []

    def pause(seconds):
        pauses.append(seconds)
        if len(pauses) == 2:
            service.rollback()  # the request ends: its lock goes

    applied = migrations.migrate(dsn, tmp_path, log=log.append, sleep=pause)
    assert [m.name for m in applied] == ["add_column"]
    assert pauses == [0.5, 1.0]
    retries = [line for line in log if "trying again" in line]
    assert len(retries) == 2
    assert f"no lock within {migrations.LOCK_TIMEOUT_MS} ms" in retries[0]
    assert columns(dsn) == ["id", "extra"]
    assert query(dsn, "SELECT version FROM schema_migrations") == [(1,)]


def test_a_migration_that_never_gets_its_lock_fails_and_leaves_nothing(held_table, tmp_path,
                                                                      monkeypatch):
    dsn, service = held_table
    monkeypatch.setattr(migrations, "ATTEMPTS", 3)
    pauses = []
    with pytest.raises(psycopg2.errors.LockNotAvailable):
        migrations.migrate(dsn, tmp_path, log=lambda line: None, sleep=pauses.append)
    assert len(pauses) == 2
    service.rollback()
    assert columns(dsn) == ["id"]
    assert query(dsn, "SELECT version FROM schema_migrations") == []


def test_the_domains_migration_leaves_the_planner_its_statistics(own_database, tmp_path):
    """0011 changes column types, which drops their statistics; 0012 gathers them again."""
    for path in sorted(migrations.MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= 10:
            shutil.copy(path, tmp_path)
    migrations.migrate(own_database, tmp_path, log=lambda line: None)
    query(own_database, "INSERT INTO products (sku, name, price, stock)"
                        " SELECT 'S-' || i, 'P', i % 50, i % 7 FROM generate_series(1, 500) i")
    query(own_database, "INSERT INTO events (type, aggregate_id, data)"
                        " SELECT 'product.updated', gen_random_uuid(), '{}'"
                        " FROM generate_series(1, 50)")
    query(own_database, "ANALYZE products, events")
    gathered = ("SELECT tablename || '.' || attname FROM pg_stats WHERE schemaname = 'public'"
                "  AND (tablename, attname) IN (('products', 'stock'), ('products', 'price'),"
                " ('products', 'sku'), ('events', 'type')) ORDER BY 1")
    expected = [("events.type",), ("products.price",), ("products.sku",), ("products.stock",)]
    assert query(own_database, gathered) == expected

    shutil.copy(migrations.MIGRATIONS_DIR / "0011_checks_as_domains.sql", tmp_path)
    migrations.migrate(own_database, tmp_path, log=lambda line: None)
    assert query(own_database, gathered) == []

    shutil.copy(migrations.MIGRATIONS_DIR / "0012_statistics_after_domains.sql", tmp_path)
    assert [m.version for m in migrations.migrate(own_database, tmp_path,
                                                  log=lambda line: None)] == [12]
    assert query(own_database, gathered) == expected
