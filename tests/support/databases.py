"""Scratch databases on the test Postgres, for tests that need one of their own."""

from __future__ import annotations

import contextlib

import psycopg2
from psycopg2 import sql


@contextlib.contextmanager
def scratch_database(postgres, name: str, *, options: str = "", keep: bool = False):
    """Create database ``name`` (owned by the app's role; dropped first if it is
    left over) and yield its DSN; drop it afterwards unless ``keep``.

    ``options``: what follows ``OWNER peregrine`` in CREATE DATABASE (a
    template, an encoding, a locale).
    """
    identifier = sql.Identifier(name)
    admin = psycopg2.connect(postgres.admin_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER peregrine " + options)
                        .format(identifier))
        yield postgres.dsn(name)
        if not keep:
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(identifier))
    finally:
        admin.close()
