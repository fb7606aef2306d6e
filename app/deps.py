"""The long-lived collaborators of one worker process, built once by the factory."""

from __future__ import annotations

import logging

import psycopg2

from app.accounts import Accounts
from app.cache import Cache
from app.catalog import Catalog
from app.config import Config
from app.db import Pool
from app.errors import Unavailable
from app.near_listener import Announcer, Listener
from app.orders import Orders
from app.passwords import Passwords
from app.ratelimit import RateLimiter

log = logging.getLogger(__name__)


class Dependencies:
    """What resources need: configuration, pool, cache, metrics and the services on them."""

    def __init__(self, config: Config, pool: Pool, cache: Cache, metrics):
        self.config = config
        self.pool = pool
        self.cache = cache
        self.metrics = metrics
        self.passwords = Passwords(threads=2)
        self.limiter = RateLimiter(cache, metrics)
        self.accounts = Accounts(pool, self.passwords, config.jwt_secret, metrics)
        self.catalog = Catalog(pool, cache, metrics)
        self.orders = Orders(pool, self.catalog, metrics)
        # Hears other nodes' catalog writes, when near entries listen (the factory sets it).
        self.near_listener: Listener | None = None
        self.near_announcer: Announcer | None = None  # tells other nodes' listeners

    def database_ready(self) -> bool:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except (Unavailable, psycopg2.Error):
            return False

    def close(self) -> None:
        self.passwords.close()
        self.catalog.settle(timeout=5)  # committed writes get their invalidation
        if self.near_announcer is not None:
            self.near_announcer.close()  # after the rounds: each has waited for its announcement
        if self.near_listener is not None:
            self.near_listener.close()
        self.catalog.replicas.close()
        self.pool.close()
        self.cache.close()
