"""Catalog reads from streaming replicas, never older than a write already answered.

Only the catalog's cache misses, lists and search come here
(:meth:`Replicas.read`); writes, transactions, ``FOR UPDATE``, auth, users
and orders use the primary pool directly and never see this module.

**What a replica may answer.** The contract: a committed write is visible to
the next read on the same node and within 1 s everywhere, and a cache fill
must never store a value older than a write whose invalidation preceded it
(the fill would then be served for a whole TTL). A replica answers a catalog
read only when it has replayed past every catalog write whose invalidation
could have preceded that read:

* after a catalog write commits, and *before* it invalidates any cache key,
  the writer reads the primary's WAL insert position (it is past the commit
  record, which is already inserted) and raises the shared high-water mark
  ``catalog:lsn`` in memcached to it, never lowering it (``gets``/``cas``);
* a read loads from Postgres only after it has read its key's ``cas`` token
  (app/readthrough.py); it reads the mark after that, inside the load. A
  write W whose invalidation came before the token read raised the mark
  before that invalidation, so the mark the read sees is at least W's
  position. The same holds for a read that began after W answered, on any
  worker of any node (they all share memcached), and for reads that bypass
  the fill (waiters, near-cache records: both record before the load);
* the query runs on a replica connection that has seen
  ``pg_last_wal_replay_lsn() >= mark`` (asked on it now, or earlier: replay
  only moves forward while the server runs, no connection outlives a
  restart, and each autocommit statement takes a fresh snapshot), so what it
  answers includes W. If it has not caught up, the primary answers.

**When the mark is unknown, the primary answers.** The mark is missing after
an eviction, a flush, a memcached outage or an epoch change; readers then
use the primary, and the health loop re-seeds it with ``add`` from the
primary's current insert position (which covers every commit so far). A
writer that cannot raise the mark (memcached down or timing out) reports the
key as a lost invalidation, which retires its memcached node's epoch
(app/cache_epochs.py): no process reads the old mark afterwards, so it is
unknown until raised or re-seeded. The one window left: a seed whose
position was read before a write W, stored under the new epoch after W's
raise failed and its epoch bump was adopted. That needs the memcached node
to come back within one health interval of failing, and it is the same
class of window as a failed epoch bump.

Writes made outside the application (psql, a migration) do not raise the
mark: reads see them once replayed, as on any asynchronous standby.

**Health.** A greenlet per worker checks every replica each ``interval``
seconds: it must answer, be in recovery, and lag by at most ``max_lag``
seconds. Lag is measured in WAL, not by replay timestamps (which stand still
on an idle primary and then jump): each check samples the primary's
position, and a replica's lag is the age of the oldest sample it has not
replayed yet (0 when it has replayed them all), to within one interval. A failing
replica leaves the rotation at once (also when a read on it fails or hits a
recovery conflict) and comes back at the first check it passes. A read that
fails on a replica for any reason, a 40001 recovery conflict included, is
run again on the primary: replicas never cause an error response.
"""

from __future__ import annotations

import collections
import itertools
import logging
import re
import time
from typing import Literal
from urllib.parse import urlsplit

import gevent
import msgspec
import psycopg2
import psycopg2.errors

from app.cache import key
from app.db import Pool, PoolExhausted
from app.errors import Unavailable
from app.metrics import NULL_METRICS, Metrics

log = logging.getLogger(__name__)

LSN_KEY = key("catalog", "lsn")
_RAISE_ATTEMPTS = 20  # cas races between writers; each retry sees a newer mark
_CHECK_TIMEOUT = 1.0  # a health check slower than this counts as a failure


def lsn_number(text: str) -> int:
    """``'16/B374D848'`` (pg_lsn) as an integer that orders like it."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(number: int) -> str:
    return f"{number >> 32:X}/{number & 0xFFFFFFFF:X}"


def is_recovery_conflict(ex: BaseException) -> bool:
    """A standby cancelled the query because replay needed what it was reading."""
    return (isinstance(ex, psycopg2.errors.SerializationFailure)
            and "conflict with recovery" in str(ex))


class ReplicaStatus(msgspec.Struct):
    """One replica as /readyz reports it."""

    name: str
    status: Literal["ok", "degraded"]
    reason: str | None
    lag_seconds: float | None
    served: int
    fallbacks: int


class Replica:
    def __init__(self, url: str, pool: Pool):
        self.url = url
        self.pool = pool
        self.name = _name(url)
        self.metric = "db.replica." + re.sub(r"[^A-Za-z0-9]+", "_", self.name)
        self.healthy = False  # until the first check passes
        self.reason: str | None = "not checked yet"
        self.lag: float | None = None
        self.served = 0
        self.fallbacks = 0

    def take_out(self, reason: str) -> None:
        if self.healthy:
            log.warning("replica %s out of rotation: %s", self.name, reason)
        self.healthy = False
        self.reason = reason

    def put_back(self) -> None:
        if not self.healthy and self.reason != "not checked yet":
            log.info("replica %s back in rotation", self.name)
        self.healthy = True
        self.reason = None

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(name=self.name, status="ok" if self.healthy else "degraded",
                             reason=self.reason, lag_seconds=self.lag, served=self.served,
                             fallbacks=self.fallbacks)


class Replicas:
    """The primary plus zero or more replicas, for reads that may use the latter."""

    def __init__(self, primary: Pool, cache, urls=(), *, pool_size: int = 4,
                 max_lag: float = 5.0, interval: float = 1.0,
                 metrics: Metrics = NULL_METRICS):
        self.primary = primary
        self._cache = cache
        self._max_lag = max_lag
        self._interval = interval
        self._metrics = metrics
        self.replicas = [
            Replica(url, Pool(url, size=pool_size, timeout=0.05, connect_timeout=1.0,
                              application_name="peregrine-replica-reader", metrics=metrics))
            for url in urls
        ]
        self._turn = itertools.count()
        self._checker: gevent.Greenlet | None = None
        # (primary position, monotonic time) from recent checks, oldest first.
        self._samples: collections.deque[tuple[int, float]] = collections.deque()
        self._keep_samples = max(2 * max_lag, 10.0)

    # -- reads ------------------------------------------------------------------

    def read(self, query):
        """``query(cursor)`` on a replica that has replayed every catalog write.

        Otherwise, and whenever the replica fails, on the primary.
        """
        if not self.replicas:
            return self._on_primary(query)
        if self._checker is None:
            self._start()
        replica = self._choose()
        if replica is None:
            return self._fallback(None, "no healthy replica", query)
        mark = self._mark()
        if mark is None:
            return self._fallback(replica, "write position unknown", query)
        try:
            with replica.pool.connection() as conn, conn.cursor() as cur:
                if conn.replayed < mark:  # PERF: one round trip less when known
                    cur.execute("SELECT pg_last_wal_replay_lsn()::text")
                    (replayed,) = cur.fetchone()
                    conn.replayed = lsn_number(replayed) if replayed else 0
                caught_up = conn.replayed >= mark
                if caught_up:
                    result = query(cur)
        except Exception as ex:  # noqa: BLE001 - whatever the replica did, the primary answers
            if is_recovery_conflict(ex):
                self._metrics.incr(f"{replica.metric}.recovery_conflict")
                replica.take_out("recovery conflict")
                return self._fallback(replica, "recovery conflict", query)
            if _replica_fault(ex):
                replica.take_out(f"read failed: {type(ex).__name__}")
            # Anything else (bad input, say) the primary reports as it would have.
            return self._fallback(replica, type(ex).__name__, query)
        if not caught_up:
            return self._fallback(replica, "behind the last write", query)
        replica.served += 1
        self._metrics.incr(f"{replica.metric}.served")
        return result

    def _choose(self) -> Replica | None:
        healthy = [r for r in self.replicas if r.healthy]
        if not healthy:
            return None
        return healthy[next(self._turn) % len(healthy)]

    def _fallback(self, replica: Replica | None, why: str, query):
        if replica is not None:
            replica.fallbacks += 1
            self._metrics.incr(f"{replica.metric}.fallback")
        self._metrics.incr("db.replica.fallback")
        log.debug("catalog read on the primary: %s", why)
        return self._on_primary(query)

    def _on_primary(self, query):
        with self.primary.connection() as conn, conn.cursor() as cur:
            return query(cur)

    # -- the write mark ---------------------------------------------------------

    def wrote(self) -> list[str]:
        """After a catalog commit, before its invalidation: raise the mark.

        Returns the keys whose update was lost, for the caller's invalidation
        to report (which retires their memcached node's epoch). Done even by
        a process without replicas: another node may read through some (a
        rolling deploy that adds them, for one).
        """
        try:
            # Ahead of the requests waiting for a connection: the writers of
            # this invalidation round are waiting for it to answer them, and
            # behind the line it would wait as long as each of them did.
            position = self._primary_position(ahead=True)
        except Exception as ex:  # noqa: BLE001 - the mark must not stay below this commit
            log.warning("cannot read the WAL position after a write (%s)", type(ex).__name__)
            return [LSN_KEY]
        return [] if self._raise(position) else [LSN_KEY]

    def _mark(self) -> int | None:
        value = self._cache.get(LSN_KEY)
        if value is None or not value.isdigit():
            return None
        return int(value)

    def _raise(self, position: int) -> bool:
        encoded = b"%d" % position
        for _ in range(_RAISE_ATTEMPTS):
            value, token = self._cache.gets(LSN_KEY)
            if value is None:
                added = self._cache.add(LSN_KEY, encoded, ttl=0)
                if added:
                    return True
                if added is None:
                    return False  # memcached unreachable
                continue
            if value.isdigit() and int(value) >= position:
                return True
            if self._cache.cas(LSN_KEY, encoded, token, ttl=0):
                return True
        return False

    def _primary_position(self, *, ahead: bool = False) -> int:
        with self.primary.connection(ahead=ahead) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_insert_lsn()::text")
            return lsn_number(cur.fetchone()[0])

    # -- health -----------------------------------------------------------------

    def check(self) -> None:
        """Check every replica once (what the health loop does)."""
        now = time.monotonic()
        try:
            primary = self._primary_position()
        except Exception:  # noqa: BLE001 - without the primary nothing can be judged
            primary = None
        if primary is not None:
            self._samples.append((primary, now))
            while self._samples and self._samples[0][1] < now - self._keep_samples:
                self._samples.popleft()
            if self._cache.get(LSN_KEY) is None:
                # Covers every commit so far; add never lowers a mark that exists.
                self._cache.add(LSN_KEY, b"%d" % primary, ttl=0)
        for replica in self.replicas:
            self._check(replica, now)

    def _lag(self, replayed: int, now: float) -> float:
        """Seconds since the primary was at a position the replica has not replayed."""
        for position, sampled_at in self._samples:
            if position > replayed:
                return round(now - sampled_at, 3)
        return 0.0

    def _check(self, replica: Replica, now: float) -> None:
        try:
            with gevent.Timeout(_CHECK_TIMEOUT):
                with replica.pool.connection() as conn, conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
                    in_recovery, replayed = cur.fetchone()
        except BaseException as ex:
            if isinstance(ex, (KeyboardInterrupt, SystemExit, gevent.GreenletExit)):
                raise
            replica.lag = None
            replica.take_out(f"check failed: {type(ex).__name__}")
            self._metrics.incr(f"{replica.metric}.check_error")
            return
        if not in_recovery:
            replica.take_out("not a standby (promoted?)")
            return
        if not self._samples:
            replica.take_out("the primary's position is unknown")
            return
        replica.lag = self._lag(lsn_number(replayed) if replayed else 0, now)
        self._metrics.gauge(f"{replica.metric}.lag_s", replica.lag)
        if replica.lag > self._max_lag:
            replica.take_out(f"lagging {replica.lag:.1f} s")
        else:
            replica.put_back()

    def _start(self) -> None:
        self._checker = gevent.spawn(self._loop)
        self.check()  # now, so the first reads need not all go to the primary

    def _loop(self) -> None:
        while True:
            gevent.sleep(self._interval)
            try:
                self.check()
            except Exception:
                log.exception("replica health check failed")

    def statuses(self) -> list[ReplicaStatus]:
        if self.replicas and self._checker is None:
            self._start()
        return [replica.status() for replica in self.replicas]

    def close(self) -> None:
        if self._checker is not None:
            self._checker.kill(block=False)
        for replica in self.replicas:
            replica.pool.close()


def _replica_fault(ex: Exception) -> bool:
    """The replica failed (not the input, nor a busy pool): leave the rotation."""
    if isinstance(ex, PoolExhausted):
        return False
    return isinstance(ex, (Unavailable, psycopg2.OperationalError, psycopg2.InterfaceError,
                           psycopg2.InternalError))


def _name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"


def from_config(config, primary: Pool, cache, metrics: Metrics = NULL_METRICS) -> Replicas:
    """The replicas ``config`` names (PEREGRINE_DATABASE_REPLICA_URLS), none when empty."""
    return Replicas(primary, cache, config.database_replica_urls,
                    pool_size=config.replica_pool_size, max_lag=config.replica_max_lag,
                    metrics=metrics)
