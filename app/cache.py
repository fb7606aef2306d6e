"""memcached behind a facade that fails open.

pymemcache's defaults are wrong for a gevent server (no socket timeouts,
``noreply`` writes whose ``add`` always "succeeds", pools that raise when
exhausted). :class:`Cache` fixes those and adds a circuit breaker:

* every call has a connect and a read timeout;
* any failure is a cache miss (reads) or a skipped write, plus a metric;
* after ``breaker_threshold`` consecutive failures the cache is skipped
  entirely for ``breaker_reset`` seconds, so a dead server costs nothing per
  request; then one probe call decides whether it is back;
* ``add`` and ``incr`` report what really happened (``None`` when unknown).

Keys are namespaced and versioned (``peregrine:v1:<ns>:<part>``); any part
that comes from user input goes through :func:`digest`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash

log = logging.getLogger(__name__)

KEY_PREFIX = "peregrine:v1"


def digest(text: str | bytes) -> str:
    """A short, key-safe digest of user-controlled text."""
    if isinstance(text, str):
        text = text.encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def _crc32(text: str, seed: int) -> int:
    return zlib.crc32(text.encode(), seed)


class _Crc32Rendezvous(RendezvousHash):
    """Rendezvous hashing with zlib's C crc32.

    PERF: pymemcache's default murmur3 is pure Python, ~55 us per key on
    this machine: a quarter of the CPU of a cached product read.
    """

    def __init__(self, nodes=None, seed=0):
        super().__init__(nodes, seed, hash_function=_crc32)


def key(namespace: str, *parts: object) -> str:
    """``peregrine:v1:<namespace>:<part>:...``; parts must already be key-safe."""
    return ":".join((KEY_PREFIX, namespace, *map(str, parts)))


class Cache:
    """Fail-open memcached access with a circuit breaker."""

    def __init__(
        self,
        servers,
        *,
        connect_timeout: float = 0.1,
        timeout: float = 0.1,
        max_pool_size: int = 512,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
        metrics=None,
    ):
        self.servers = list(servers)
        self.metrics = metrics
        self.breaker_threshold = breaker_threshold
        self.breaker_reset = breaker_reset
        self._failures = 0
        self._open_until = 0.0
        common = dict(
            connect_timeout=connect_timeout,
            timeout=timeout,
            no_delay=True,
            max_pool_size=max_pool_size,
            pool_idle_timeout=30,
            ignore_exc=False,
            default_noreply=False,
        )
        if len(self.servers) == 1:
            # PERF: one server needs no key hashing at all.
            self._client = PooledClient(self.servers[0], **common)
        else:
            self._client = HashClient(
                self.servers,
                hasher=_Crc32Rendezvous,
                use_pooling=True,
                # The breaker below decides when to try again; keep the
                # client's own dead-server bookkeeping short so they agree.
                retry_attempts=1,
                retry_timeout=0,
                dead_timeout=breaker_reset,
                **common,
            )

    # -- public API ---------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the breaker is open."""
        return time.monotonic() >= self._open_until

    def get(self, k: str) -> bytes | None:
        return self._call("get", None, k)

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        return self._call("get_many", {}, keys) if keys else {}

    def set(self, k: str, value: bytes, ttl: int) -> bool:
        return bool(self._call("set", False, k, value, expire=ttl, noreply=True))

    def add(self, k: str, value: bytes, ttl: int) -> bool | None:
        """Store only if absent: True stored, False present, None cache down."""
        return self._call("add", None, k, value, expire=ttl, noreply=False)

    def incr(self, k: str, delta: int = 1) -> int | None:
        """Increment; None when the key is missing or the cache is down."""
        return self._call("incr", None, k, delta, noreply=False)

    def delete(self, k: str) -> bool:
        return bool(self._call("delete", False, k, noreply=False))

    def ping(self) -> bool:
        """True when memcached answers right now (ignores an open breaker)."""
        try:
            self._client.get(key("ping", "readyz"))
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False
        self._failures = 0
        self._open_until = 0.0
        return True

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a dead pool is fine
            pass

    # -- internals ----------------------------------------------------------

    def _call(self, method: str, on_failure, *args, **kwargs):
        if not self.available:
            self._count("cache.skipped")
            return on_failure
        try:
            result = getattr(self._client, method)(*args, **kwargs)
        except Exception as ex:  # noqa: BLE001 - every cache failure fails open
            self._record_failure(method, ex)
            return on_failure
        self._failures = 0
        return result

    def _record_failure(self, method: str, ex: Exception) -> None:
        self._failures += 1
        self._count("cache.error")
        if self._failures >= self.breaker_threshold:
            self._open_until = time.monotonic() + self.breaker_reset
            self._count("cache.breaker_open")
            log.warning(
                "memcached failing (%s: %s); skipping the cache for %.0fs",
                method, type(ex).__name__, self.breaker_reset,
            )

    def _count(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.incr(name)
