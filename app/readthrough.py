"""Read-through caching with stale-while-revalidate and stampede protection.

A cached record is ``b"<soft_expiry>:<kind><payload>"`` stored with a hard TTL
of twice the soft one. ``kind`` is ``+`` for a value and ``-`` for "does not
exist" (negative caching, a shorter TTL). Past the soft expiry one caller
wins an ``add`` lock and recomputes while the others keep serving the stale
value; on a cold miss the losers wait briefly for the winner, then load
themselves (bounded). With memcached down everything is a plain load.
"""

from __future__ import annotations

import time

import gevent

from app.cache import Cache

MISSING = object()  # what a loader returns for "does not exist"
_LOCK_TTL = 5
_WAIT_STEPS = (0.02, 0.05, 0.1)  # a cold-miss loser waits at most ~170 ms


class ReadThrough:
    def __init__(self, cache: Cache, metrics, clock=time.time):
        self._cache = cache
        self._metrics = metrics
        self._clock = clock

    def get(self, key: str, load, ttl: int, negative_ttl: int, metric: str):
        """Return cached bytes, or ``load()``'s bytes (or MISSING), caching them."""
        record = self._cache.get(key)
        decoded = self._decode(record) if record is not None else None
        if decoded is not None:
            fresh, value = decoded
            if fresh:
                self._metrics.incr(f"cache.{metric}.hit")
                return value
            # Stale: one caller refreshes, the others serve what is there.
            if self._cache.add(f"{key}:lock", b"1", _LOCK_TTL) is False:
                self._metrics.incr(f"cache.{metric}.stale")
                return value
            return self._load(key, load, ttl, negative_ttl, metric)

        locked = self._cache.add(f"{key}:lock", b"1", _LOCK_TTL)
        if locked is False:  # someone else is loading it: wait for them briefly
            for delay in _WAIT_STEPS:
                gevent.sleep(delay)
                record = self._cache.get(key)
                decoded = self._decode(record) if record is not None else None
                if decoded is not None:
                    self._metrics.incr(f"cache.{metric}.waited")
                    return decoded[1]
        return self._load(key, load, ttl, negative_ttl, metric)

    def forget(self, key: str) -> None:
        self._cache.delete(key)

    def _load(self, key: str, load, ttl: int, negative_ttl: int, metric: str):
        self._metrics.incr(f"cache.{metric}.miss")
        value = load()
        if value is MISSING:
            record, soft = b"-", negative_ttl
        else:
            record, soft = b"+" + value, ttl
        expiry = int(self._clock()) + soft
        self._cache.set(key, b"%d:" % expiry + record, ttl=soft * 2)
        self._cache.delete(f"{key}:lock")
        return value

    def _decode(self, record: bytes):
        """``(fresh, value)``, or None for a record this code did not write."""
        expiry, _, rest = record.partition(b":")
        if not expiry.isdigit() or rest[:1] not in (b"+", b"-"):
            return None
        fresh = int(expiry) > self._clock()
        return fresh, (MISSING if rest[:1] == b"-" else rest[1:])
