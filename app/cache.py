"""memcached behind a facade that fails open, with one breaker per node.

pymemcache's defaults are wrong for a gevent server (no socket timeouts,
``noreply`` writes whose ``add`` always "succeeds", pools that raise when
exhausted). :class:`Cache` fixes those and gives every memcached node its own
circuit breaker:

* every call has a connect and a read timeout;
* any failure is a cache miss (reads) or a skipped write, plus a metric;
* after ``breaker_threshold`` consecutive failures of one node, that node is
  skipped for ``breaker_reset`` seconds, so a dead server costs nothing per
  request; then one probe call decides whether it is back. The other nodes
  keep serving: one sick node must not empty the whole cache;
* ``add``, ``incr`` and ``cas`` report what really happened (``None`` when
  unknown).

Keys are spread by rendezvous hashing over the *configured* servers, and a
sick node is never taken out of the set: its keys are plain misses, served
from Postgres, until it is back. Moving them to another node (what
pymemcache's HashClient does) fills copies there that no invalidation reaches
once the keys move back, and old copies on the sick node come back with it.

Invalidations that cannot reach their node (a delete in
:meth:`Cache.invalidate` timing out or skipped by an open breaker, or an
``incr`` the caller reports as ``lost``) are handed to
:class:`app.cache_epochs.Epochs`, which moves the node to a new epoch: every
key is stored on its node as ``e<epoch>:<key>``, so the old values become
unreachable. The node is chosen
from the key *without* the epoch, so a bump never moves keys. Without an
``epochs`` store (tools, unit tests) keys are stored as given and a lost
invalidation is only counted.

Keys are namespaced and versioned (``peregrine:v1:<ns>:<part>``); any part
that comes from user input goes through :func:`digest`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.rendezvous import RendezvousHash

from app import memcached_wire as wire
from app.metrics import NULL_METRICS, Metrics

log = logging.getLogger(__name__)

KEY_PREFIX = "peregrine:v1"
_FAILED = object()  # what _call answers when the node did not


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


class _Node:
    """One configured memcached server: its connection pool and its breaker."""

    __slots__ = ("name", "client", "failures", "open_until")

    def __init__(self, name: str, client: PooledClient):
        self.name = name
        self.client = client
        self.failures = 0
        self.open_until = 0.0


class Cache:
    """Fail-open memcached access with a circuit breaker per node."""

    def __init__(
        self,
        servers,
        *,
        connect_timeout: float = 0.1,
        timeout: float = 0.1,
        max_pool_size: int = 512,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
        metrics: Metrics = NULL_METRICS,
        epochs=None,
    ):
        self.servers = list(servers)
        self.metrics = metrics
        self.breaker_threshold = breaker_threshold
        self.breaker_reset = breaker_reset
        common = dict(
            connect_timeout=connect_timeout,
            timeout=timeout,
            no_delay=True,
            max_pool_size=max_pool_size,
            pool_idle_timeout=30,
            ignore_exc=False,
            default_noreply=False,
        )
        self._nodes = [_Node(f"{host}:{port}", PooledClient((host, port), **common))
                       for host, port in self.servers]
        self._by_name = {node.name: node for node in self._nodes}
        # PERF: one server needs no key hashing at all.
        self._ring = (None if len(self._nodes) == 1
                      else _Crc32Rendezvous([node.name for node in self._nodes]))
        self._epochs = epochs
        if epochs is not None:
            epochs.watch([node.name for node in self._nodes])

    # -- public API ---------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while any node's breaker is open."""
        now = time.monotonic()
        return all(now >= node.open_until for node in self._nodes)

    def owner(self, k: str) -> str:
        """The node (``host:port``) that holds ``k``; only the configuration decides."""
        return self._owner(k).name

    def tag(self, k: str):
        """What ``k`` is read under right now: its node's epoch, or None when the node
        is skipped or bypassed (app/nearcache.py records it with an entry)."""
        node = self._owner(k)
        if time.monotonic() < node.open_until:
            return None
        if self._epochs is None:
            return 0
        return self._epochs.get(node.name)

    def steady(self, k: str) -> bool:
        """Whether ``k``'s node is in use and its last call did not fail.

        For optional reads (app/replay.py): one that would time out on a
        stalled node, then be repeated by the full path, is not worth trying.
        """
        node = self._owner(k)
        return node.failures == 0 and self.tag(k) is not None

    def get(self, k: str) -> bytes | None:
        return self._keyed(wire.get, None, k)

    def gets(self, k: str) -> tuple[bytes | None, bytes | None]:
        """``(value, cas token)``, ``(None, None)`` when missing or down."""
        return self._keyed(wire.gets, (None, None), k)

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        by_node: dict[_Node, dict[str, str]] = {}
        for k in keys:
            node, stored = self._route(k)
            if stored is not None:
                by_node.setdefault(node, {})[stored] = k
        found = {}
        for node, names in by_node.items():
            for stored, value in self._call(node, "get_many", {}, list(names)).items():
                found[names[stored]] = value
        return found

    def set(self, k: str, value: bytes, ttl: int) -> bool:
        return bool(self._keyed("set", False, k, value, expire=ttl, noreply=True))

    def add(self, k: str, value: bytes, ttl: int) -> bool | None:
        """Store only if absent: True stored, False present, None cache down."""
        return self._keyed(wire.add, None, k, value, ttl)

    def cas(self, k: str, value: bytes, token: bytes, ttl: int) -> bool:
        """Store only if ``k`` is unchanged since ``gets`` gave ``token``."""
        return self._keyed(wire.cas, None, k, value, token, ttl) is True

    def incr(self, k: str, delta: int = 1) -> int | None:
        """Increment; None when the key is missing or the cache is down."""
        return self._keyed(wire.incr, None, k, delta)

    def delete(self, k: str) -> bool:
        return bool(self._keyed(wire.delete, False, k))

    def invalidate(self, keys, *, lost=(), wait: bool = True) -> float:
        """After a commit: delete ``keys``; make sure no node serves a missed one.

        ``lost`` are keys whose invalidation the caller could not do itself
        (an ``incr`` that failed). Every node that missed one of them has its
        epoch retired (app/cache_epochs.py): this returns once no process
        reads that node's old keys any more, or, with ``wait=False``, returns
        the ``time.monotonic()`` after which none does (0.0: nothing missed).
        """
        missed = {self._owner(k) for k in lost}
        deletes: dict[_Node, list[str]] = {}
        for k in keys:
            node, stored = self._route(k)
            if stored is None:
                missed.add(node)
            else:
                deletes.setdefault(node, []).append(stored)
        for node, stored_keys in deletes.items():
            # One write per node, not a round trip per key (app/memcached_wire.py).
            if self._call(node, wire.delete_many, _FAILED, stored_keys) is _FAILED:
                missed.add(node)
        if missed:
            self.metrics.incr("cache.invalidation_lost")
            if self._epochs is not None:
                return self._epochs.lost([node.name for node in missed], wait=wait)
        return 0.0

    def ping(self) -> bool:
        """True when every node answers right now (ignores, and closes, open breakers)."""
        healthy = True
        for node in self._nodes:
            try:
                node.client.get(key("ping", "readyz"))
            except Exception:  # noqa: BLE001 - any failure means "not healthy"
                healthy = False
                continue
            node.failures = 0
            node.open_until = 0.0
        return healthy

    def close(self) -> None:
        if self._epochs is not None:
            self._epochs.close()
        for node in self._nodes:
            try:
                node.client.close()
            except Exception:  # noqa: BLE001 - closing a dead pool is fine
                pass

    # -- internals ----------------------------------------------------------

    def _owner(self, k: str) -> _Node:
        if self._ring is None:
            return self._nodes[0]
        return self._by_name[self._ring.get_node(k)]

    def _route(self, k: str) -> tuple[_Node, str | None]:
        """``k``'s node and the key stored there; None when the node is not to be used."""
        node = self._owner(k)
        if time.monotonic() < node.open_until:
            self.metrics.incr("cache.skipped")
            return node, None
        if self._epochs is None:
            return node, k
        epoch = self._epochs.get(node.name)
        if epoch is None:  # not known yet, or a lost invalidation is not yet covered
            self.metrics.incr("cache.bypassed")
            return node, None
        return node, f"e{epoch}:{k}"

    def _keyed(self, method: str | Callable[..., Any], on_failure, k: str, *args, **kwargs):
        node, stored = self._route(k)
        if stored is None:
            return on_failure
        return self._call(node, method, on_failure, stored, *args, **kwargs)

    def _call(self, node: _Node, method: str | Callable[..., Any], on_failure, *args,
              **kwargs):
        """``method``: a pymemcache method's name, or a function of app/memcached_wire.py."""
        try:
            if isinstance(method, str):
                result = getattr(node.client, method)(*args, **kwargs)
            else:
                result = method(node.client, *args)
        except Exception as ex:  # noqa: BLE001 - every cache failure fails open
            name = method if isinstance(method, str) else method.__name__
            self._record_failure(node, name, ex)
            return on_failure
        if not kwargs.get("noreply"):  # a noreply send proves nothing about the node
            node.failures = 0
        return result

    def _record_failure(self, node: _Node, method: str, ex: Exception) -> None:
        node.failures += 1
        self.metrics.incr("cache.error")
        if node.failures >= self.breaker_threshold:
            node.open_until = time.monotonic() + self.breaker_reset
            self.metrics.incr("cache.breaker_open")
            log.warning(
                "memcached %s failing (%s: %s); skipping it for %.0fs",
                node.name, method, type(ex).__name__, self.breaker_reset,
            )
