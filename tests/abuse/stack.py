"""The stack ``make abuse`` runs against: the pieces of ``make faults``, reused.

A private Postgres and memcached (app.manage.services), migrated, and gunicorn with
the shipped gunicorn.conf.py (tests.faults' Stack.serve), the general rate
limit off (PEREGRINE_RATE_LIMIT_PER_MINUTE=0) so that a fuzzer's volume is
not answered with 429s. Seeded with tests.faults' seed(): products, users
with a live refresh token each, and one admin.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# tests.faults monkey-patches with gevent on import (its Client and load are
# green); the abuse checks run green too, so importing it first is right.
from tests.faults.__main__ import Client, Stack, seed  # isort: skip

from app.manage.migrate import migrate
from app.manage.services import MemcachedServer, PostgresServer

JWT_SECRET = ("abuse-secret-" + "z" * 40).encode()


@dataclass
class Seeded:
    products: list[str]
    users: list[dict]   # {"id", "refresh", "headers", "access"}
    admin: dict


def start(workers: int = 2) -> tuple[Stack, Path]:
    root = Path(tempfile.mkdtemp(prefix="peregrine-abuse-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "postgres", durable=False)
    mc = MemcachedServer(root / "memcached")
    pg.start()
    pg.ensure_database()
    migrate(pg.dsn(), log=lambda message: None)
    mc.start()
    stack = Stack(root, pg, [mc], {
        "PEREGRINE_DATABASE_URL": pg.dsn(),
        "PEREGRINE_MEMCACHED_SERVERS": f"127.0.0.1:{mc.port}",
        "PEREGRINE_JWT_SECRET": JWT_SECRET.decode(),
        # Two-factor routes on, as deployed (without a key they answer 503).
        "PEREGRINE_DATA_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PEREGRINE_RATE_LIMIT_PER_MINUTE": "0",
        "PEREGRINE_LOG_LEVEL": "warning",
        "PEREGRINE_DB_POOL_TIMEOUT": "1.0",
    })
    try:
        stack.serve(workers)
    except BaseException:
        stop(stack)
        raise
    return stack, root


def seed_accounts(stack: Stack, products: int = 20, users: int = 4) -> Seeded:
    product_ids, accounts, admin = seed(stack, products, users)
    client = Client(stack.port)
    for account in [*accounts, admin]:
        status, _, body = client.call("GET", "/v1/users/me", headers=account["headers"])
        assert status == 200, body
        account["id"] = json.loads(body)["id"]
        account["access"] = account["headers"]["Authorization"].split(" ", 1)[1]
    client.close()
    return Seeded(product_ids, accounts, admin)


def stop(stack: Stack) -> None:
    if stack.proc is not None and stack.proc.poll() is None:
        stack.proc.terminate()
        try:
            stack.proc.wait(30)
        except Exception:  # noqa: BLE001 - a master that will not stop is killed
            stack.proc.kill()
    for mc in stack.mcs:
        mc.stop()
    stack.pg.stop("immediate")
