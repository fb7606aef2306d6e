"""Read-through caching with stale-while-revalidate and stampede protection.

A cached record is ``b"<soft_expiry>:<kind><payload>"`` stored with a hard TTL
of twice the soft one. ``kind`` is ``+`` for a value and ``-`` for "does not
exist" (negative caching, a shorter TTL).

Fills never overwrite an invalidation. A writer commits and then deletes the
key; a reader that loaded the row *before* that commit must not store it
*after* the delete (with a plain ``set`` it would, and everyone would read
the old row until the TTL). So every store is a ``cas`` against a token read
*before* the load:

* cold miss: ``add`` a placeholder (whoever wins it loads: the stampede
  lock), ``gets`` its token, load, ``cas``. A delete after the token was read
  removes the placeholder and the ``cas`` fails; a placeholder added after
  the delete means the load starts after the commit and sees the new row;
* stale (past the soft expiry): the ``gets`` that read the record gave its
  token; one caller wins an ``add`` lock and refreshes with ``cas`` against
  it while the others keep serving the stale value (still the latest
  committed one: every write deletes the key);
* a record this code did not write is replaced the same way.

Readers that find a placeholder wait briefly for the winner, then load
themselves without storing (bounded). A placeholder whose loader died expires
after ``_FILL_TTL``. With memcached down everything is a plain load. A delete
that cannot reach memcached at all is the cache's business: it retires the
node's epoch (app/cache_epochs.py).
"""

from __future__ import annotations

import time

import gevent
import gevent.event

from app import replay
from app.cache import Cache
from app.event_wait import wait_for

MISSING = object()  # what a loader returns for "does not exist"
PLACEHOLDER = b"?filling"  # never a record: records start with digits
_FILL_TTL = 10  # > the 5 s statement timeout: any load that finishes can be stored
_LOCK_TTL = 5
_WAIT_STEPS = (0.02, 0.05, 0.1)
# A reader joining another's near-cache miss of the same key waits at most
# this long, then reads for itself (the first may be stuck on Postgres).
_JOIN_WAIT = 0.2  # a cold-miss loser waits at most ~170 ms


class ReadThrough:
    def __init__(self, cache: Cache, metrics, clock=time.time, near=None):
        self._cache = cache
        self._metrics = metrics
        self._clock = clock
        self.near = near  # an app.nearcache.NearCache in front of memcached, or None
        #: key -> set when the near-cache miss being read for it is done.
        self._reading: dict[str, gevent.event.Event] = {}

    def get(self, key: str, load, ttl: int, negative_ttl: int, metric: str):
        """Return cached bytes, or ``load()``'s bytes (or MISSING), caching them.

        With a near cache: a valid near entry is answered at once; otherwise
        the slot is recorded *before* memcached or Postgres is read and the
        value kept with it (app/nearcache.py says why that is safe). Every
        value this method returns is one a read that began after the record
        may answer: a memcached record (never the placeholder) or a load that
        started after the record. "Does not exist" is never kept near.
        """
        near = self.near
        if near is None:
            return self._get(key, load, ttl, negative_ttl, metric)
        value = self._near_value(near, key, metric)
        if value is not None:
            return value
        reading = None
        if key not in self._reading:
            reading = self._reading[key] = gevent.event.Event()
        try:
            ticket = near.begin(key)
            value = self._get(key, load, ttl, negative_ttl, metric)
            if value is not MISSING:
                near.put(key, value, ticket)
                replay.note(key, value, metric)
        finally:
            if reading is not None:
                del self._reading[key]
                reading.set()
        return value

    def cached(self, key: str, metric: str) -> bytes | None:
        """After a near miss: a fresh memcached value of ``key``, kept near as get() keeps it.

        None when :meth:`get` would do anything else (join another greenlet's
        read, load, wait for a fill, refresh a stale record, go to Postgres
        with memcached down or bypassed, answer "does not exist"): the caller
        then takes the full path, which does it. Needs a near cache
        (app/replay.py answers the near misses of repeated reads with it).
        """
        if key in self._reading or not self._cache.steady(key):
            return None  # the full path joins that read, or handles the failing node
        near = self.near
        reading = self._reading[key] = gevent.event.Event()
        try:
            ticket = near.begin(key)  # before memcached is read, as in get()
            record, _ = self._cache.gets(key)
            if record is None or record == PLACEHOLDER:
                return None
            decoded = self._decode(record)
            if decoded is None or not decoded[0] or decoded[1] is MISSING:
                return None
            value = decoded[1]
            self._metrics.incr(f"cache.{metric}.hit")
            near.put(key, value, ticket)
            return value
        finally:
            del self._reading[key]
            reading.set()

    def _near_value(self, near, key: str, metric: str) -> bytes | None:
        """A valid near entry, or the one another greenlet's read of ``key`` is keeping."""
        value = near.get(key)
        if value is None:
            reading = self._reading.get(key)
            if reading is not None:
                # PERF: another greenlet of this worker is reading this key
                # right now: wait for it and take what it kept near, instead
                # of a memcached round trip of our own. As safe as any near
                # hit: its entry was recorded before this request began and
                # is valid only while no write has moved the key's slot.
                # Over the product scenario's 1,000 ids: memcached gets -44 %
                # (bench/README.md, "joined near-cache misses").
                wait_for(reading, _JOIN_WAIT)
                value = near.get(key)
                if value is not None:
                    self._metrics.incr(f"cache.{metric}.near_joined")
        if value is not None:
            self._metrics.incr(f"cache.{metric}.near_hit")
            replay.note(key, value, metric)
        return value

    def _get(self, key: str, load, ttl: int, negative_ttl: int, metric: str):
        record, token = self._cache.gets(key)
        if record is None:
            added = self._cache.add(key, PLACEHOLDER, _FILL_TTL)
            if added is None:  # cache down
                return self._load(key, None, load, ttl, negative_ttl, metric)
            if added:
                record, token = self._cache.gets(key)
                # Ours, or a newer placeholder after a delete: either way the
                # load starts after the token was read, which makes cas safe.
                if record != PLACEHOLDER:
                    token = None
                try:
                    return self._load(key, token, load, ttl, negative_ttl, metric)
                except Exception:
                    if token is not None:
                        self._cache.delete(key)  # do not make the others wait on it
                    raise
        elif record != PLACEHOLDER:
            decoded = self._decode(record)
            if decoded is None:  # not written by this code: replace it
                return self._load(key, token, load, ttl, negative_ttl, metric)
            fresh, value = decoded
            if fresh:
                self._metrics.incr(f"cache.{metric}.hit")
                return value
            # Stale: one caller refreshes, the others serve what is there.
            if self._cache.add(f"{key}:lock", b"1", _LOCK_TTL) is False:
                self._metrics.incr(f"cache.{metric}.stale")
                return value
            try:
                return self._load(key, token, load, ttl, negative_ttl, metric)
            finally:
                self._cache.delete(f"{key}:lock")

        # Someone else is filling it: wait for them briefly.
        for delay in _WAIT_STEPS:
            gevent.sleep(delay)
            record = self._cache.get(key)
            decoded = self._decode(record) if record is not None else None
            if decoded is not None:
                self._metrics.incr(f"cache.{metric}.waited")
                return decoded[1]
        return self._load(key, None, load, ttl, negative_ttl, metric)

    def forget(self, key: str) -> None:
        """Invalidate ``key`` (after a commit); a failure is handled by the cache's epochs."""
        self._cache.invalidate([key])
        if self.near is not None:
            self.near.bump([key])  # after memcached: see app/nearcache.py

    def _load(self, key: str, token, load, ttl: int, negative_ttl: int, metric: str):
        """``load()``, stored with cas against ``token`` (not stored without one)."""
        self._metrics.incr(f"cache.{metric}.miss")
        value = load()
        if token is not None:
            if value is MISSING:
                record, soft = b"-", negative_ttl
            else:
                record, soft = b"+" + value, ttl
            expiry = int(self._clock()) + soft
            self._cache.cas(key, b"%d:" % expiry + record, token, ttl=soft * 2)
        return value

    def _decode(self, record: bytes):
        """``(fresh, value)``, or None for a record this code did not write."""
        expiry, _, rest = record.partition(b":")
        if not expiry.isdigit() or rest[:1] not in (b"+", b"-"):
            return None
        fresh = int(expiry) > self._clock()
        return fresh, (MISSING if rest[:1] == b"-" else rest[1:])
