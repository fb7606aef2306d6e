"""In-memory stand-ins for the app's collaborators, for tests without servers.

:class:`FakeCache` implements the part of :class:`app.cache.Cache` that the
read-through cache, the rate limiter and the services call, with memcached's
semantics for ``add`` (only if absent), ``gets``/``cas`` (a token that
changes on every store; a ``cas`` after any store or delete fails) and
``incr`` (only on an existing decimal value). ``down = True`` makes every
call answer as :class:`~app.cache.Cache` does when memcached is unreachable.
"""

from __future__ import annotations

import contextlib
import itertools


class Clock:
    """A settable ``time.time`` stand-in."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeCache:
    def __init__(self, clock=None):
        self._clock = clock or Clock()
        self._items: dict[str, tuple[bytes, bytes, float | None]] = {}  # value, token, expiry
        self._tokens = itertools.count(1)
        self.down = False
        self.calls: list[tuple[str, str]] = []  # (method, key), in order
        self.invalidated: list[str] = []

    # -- what app.cache.Cache offers ---------------------------------------

    @property
    def available(self) -> bool:
        return not self.down

    def tag(self, k: str):
        return None if self.down else 0

    def get(self, k: str) -> bytes | None:
        self.calls.append(("get", k))
        item = self._live(k)
        return None if item is None else item[0]

    def gets(self, k: str) -> tuple[bytes | None, bytes | None]:
        self.calls.append(("gets", k))
        item = self._live(k)
        return (None, None) if item is None else (item[0], item[1])

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        found = {}
        for k in keys:
            value = self.get(k)
            if value is not None:
                found[k] = value
        return found

    def set(self, k: str, value: bytes, ttl: int) -> bool:
        self.calls.append(("set", k))
        if self.down:
            return False
        self._store(k, value, ttl)
        return True

    def add(self, k: str, value: bytes, ttl: int) -> bool | None:
        self.calls.append(("add", k))
        if self.down:
            return None
        if self._live(k) is not None:
            return False
        self._store(k, value, ttl)
        return True

    def cas(self, k: str, value: bytes, token: bytes, ttl: int) -> bool:
        self.calls.append(("cas", k))
        item = self._live(k)
        if item is None or item[1] != token:
            return False
        self._store(k, value, ttl)
        return True

    def incr(self, k: str, delta: int = 1) -> int | None:
        self.calls.append(("incr", k))
        item = self._live(k)
        if item is None or not item[0].isdigit():
            return None
        count = int(item[0]) + delta
        # memcached keeps the expiry and issues a new cas token.
        self._items[k] = (str(count).encode(), self._token(), item[2])
        return count

    def delete(self, k: str) -> bool:
        self.calls.append(("delete", k))
        if self.down:
            return False
        return self._items.pop(k, None) is not None

    def invalidate(self, keys, *, lost=(), wait: bool = True) -> float:
        for k in keys:
            self.delete(k)
            self.invalidated.append(k)
        return 0.0  # no epochs here: nothing to wait for

    def ping(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass

    # -- for tests -----------------------------------------------------------

    def raw(self, k: str) -> bytes | None:
        """The stored value, without recording a call."""
        item = self._live(k, record=False)
        return None if item is None else item[0]

    def expiry(self, k: str) -> float | None:
        item = self._items.get(k)
        return None if item is None else item[2]

    def _store(self, k: str, value: bytes, ttl: int) -> None:
        expiry = self._clock() + ttl if ttl else None
        self._items[k] = (value, self._token(), expiry)

    def _token(self) -> bytes:
        return str(next(self._tokens)).encode()

    def _live(self, k: str, record: bool = True):
        if self.down:
            return None
        item = self._items.get(k)
        if item is not None and item[2] is not None and self._clock() >= item[2]:
            del self._items[k]
            return None
        return item


class UnusablePool:
    """A database pool for paths that must answer before any query: using it fails.

    Every attempt is counted, so a test can also assert that none happened
    (the error it raises becomes a 500 through the app's error mapping).
    """

    def __init__(self):
        self.attempts = 0

    @contextlib.contextmanager
    def connection(self, *, ahead=False):
        self.attempts += 1
        raise AssertionError("this request reached the database")
        yield  # pragma: no cover - a generator, for contextmanager

    transaction = connection

    def close(self) -> None:
        pass


class RecordingMetrics:
    """The app's metrics interface, keeping what it is told."""

    def __init__(self):
        self.counters: dict[str, int] = {}
        self.timings: list[tuple[str, float]] = []
        self.gauges: dict[str, float] = {}

    def incr(self, name: str, count: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + count

    def timing(self, name: str, ms: float) -> None:
        self.timings.append((name, ms))

    def gauge(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def flush(self) -> None:
        pass
