"""The long-lived collaborators of one worker process, built once by the factory."""

from __future__ import annotations

import logging

from app.cache import Cache
from app.config import Config
from app.db import Pool
import psycopg2

from app.errors import Unavailable

log = logging.getLogger(__name__)


class Dependencies:
    """What resources need: configuration, the database pool, the cache, metrics."""

    def __init__(self, config: Config, pool: Pool, cache: Cache, metrics):
        self.config = config
        self.pool = pool
        self.cache = cache
        self.metrics = metrics

    def database_ready(self) -> bool:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except (Unavailable, psycopg2.Error):
            return False

    def close(self) -> None:
        self.pool.close()
        self.cache.close()
