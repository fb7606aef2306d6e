"""Fixed-window rate limits counted in memcached.

A window's counter is ``add``-ed (noreply off) then ``incr``-ed, both
atomic in memcached, so N concurrent requests count exactly N. The window
number is part of the key, so correctness does not hang on TTL precision;
the TTL only cleans up. A fixed window lets a client burst up to twice the
limit across a window boundary, which is accepted for these limits.

When memcached is unavailable the policy is deliberate:

* sensitive limits (login, register) fall back to a per-process counter, so
  brute force stays bounded (by the limit times the worker count) during a
  cache outage;
* the general per-client limit fails open: an outage of the cache must not
  become an outage of the API.

Clients are told where they stand with the ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` fields of
draft-ietf-httpapi-ratelimit-headers (its widely deployed form, up to
draft 06; the later ``RateLimit``/``RateLimit-Policy`` structured fields are
not used): on every 429 next to ``Retry-After``, and on every answer the
general limit counted (see :class:`app.auth.AccessControl`). Reset is in
seconds, like Retry-After. A limit that failed open sends none: its count
is unknown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

from app.cache import Cache, digest, key
from app.errors import RateLimited


class Quota(NamedTuple):
    """Where one identity stands against one limit in the current window.

    A NamedTuple, not a dataclass: one is made per counted request, and a
    tuple is the cheapest object Python builds.
    """

    limit: int
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset)}


@dataclass(frozen=True)
class Limit:
    scope: str  # a short name, part of the key and the metric
    limit: int  # requests allowed per window
    window: int  # seconds
    fail_closed: bool  # fall back to a local counter when memcached is down


LOGIN_PER_IP_AND_EMAIL = Limit("login-ip-email", 10, 60, fail_closed=True)
LOGIN_PER_IP = Limit("login-ip", 300, 60, fail_closed=True)
REGISTER_PER_IP = Limit("register-ip", 60, 60, fail_closed=True)


class RateLimiter:
    def __init__(self, cache: Cache, metrics, clock=time.time):
        self._cache = cache
        self._metrics = metrics
        self._clock = clock
        self._local: dict[str, int] = {}
        self._local_window: dict[str, int] = {}

    def hit(self, limit: Limit, identity: str) -> Quota | None:
        """Count one request for ``identity``; raise RateLimited past the limit.

        Returns the quota left, or None when the limit is off or failed open.
        """
        if limit.limit <= 0:
            return None
        now = self._clock()
        window = int(now // limit.window)
        counter_key = key("rl", limit.scope, digest(identity), window)
        count = self._count(counter_key, limit.window)
        if count is None:
            if not limit.fail_closed:
                return None
            count = self._count_locally(counter_key, limit.scope, window)
        reset = limit.window - int(now % limit.window)
        quota = Quota(limit.limit, max(0, limit.limit - count), reset)
        if count > limit.limit:
            self._metrics.incr(f"ratelimit.{limit.scope}.limited")
            raise RateLimited(reset, headers=quota.headers())
        return quota

    def _count(self, counter_key: str, window: int) -> int | None:
        count = self._cache.incr(counter_key)
        if count is not None:
            return count
        added = self._cache.add(counter_key, b"1", ttl=window + 5)
        if added:
            return 1
        if added is None:
            return None  # memcached is down
        return self._cache.incr(counter_key)  # another request created it first

    def _count_locally(self, counter_key: str, scope: str, window: int) -> int:
        if self._local_window.get(scope) != window:
            # A new window: forget the old one's counters for this scope.
            prefix = f":rl:{scope}:"
            for stale in [k for k in self._local if prefix in k]:
                del self._local[stale]
            self._local_window[scope] = window
        count = self._local.get(counter_key, 0) + 1
        self._local[counter_key] = count
        return count
