"""Stampede protection and stale-while-revalidate against a real memcached."""

import gevent

from app.cache import Cache
from app.metrics import NullMetrics
from app.readthrough import MISSING, ReadThrough


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_cold_miss_under_fifty_callers_loads_once(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)], timeout=1)
    reads = ReadThrough(cache, NullMetrics())
    loads = []

    def load():
        loads.append(1)
        gevent.sleep(0.05)  # a query that takes a while
        return b"value"

    callers = [gevent.spawn(reads.get, "k:cold", load, 60, 30, "t") for _ in range(50)]
    gevent.joinall(callers, raise_error=True)
    assert [c.value for c in callers] == [b"value"] * 50
    assert len(loads) == 1
    cache.close()


def test_stale_value_is_served_while_one_caller_refreshes(memcached, cache_flushed):
    clock = Clock()
    cache = Cache([("127.0.0.1", memcached.port)], timeout=1)
    reads = ReadThrough(cache, NullMetrics(), clock=clock)
    assert reads.get("k:stale", lambda: b"v1", 10, 5, "t") == b"v1"
    clock.now += 11  # past the soft expiry, within the hard TTL
    loads = []

    def slow_reload():
        loads.append(1)
        gevent.sleep(0.05)
        return b"v2"

    callers = [gevent.spawn(reads.get, "k:stale", slow_reload, 10, 5, "t") for _ in range(20)]
    gevent.joinall(callers, raise_error=True)
    values = [c.value for c in callers]
    assert len(loads) == 1
    assert values.count(b"v2") == 1 and values.count(b"v1") == 19
    assert reads.get("k:stale", slow_reload, 10, 5, "t") == b"v2"
    cache.close()


def test_negative_results_are_cached(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)])
    reads = ReadThrough(cache, NullMetrics())
    loads = []

    def load():
        loads.append(1)
        return MISSING

    for _ in range(10):
        assert reads.get("k:missing", load, 60, 30, "t") is MISSING
    assert len(loads) == 1
    cache.close()


def test_foreign_or_corrupt_records_are_reloaded(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)])
    cache.set("k:corrupt", b"garbage", ttl=60)
    reads = ReadThrough(cache, NullMetrics())
    assert reads.get("k:corrupt", lambda: b"fresh", 60, 30, "t") == b"fresh"
    cache.close()
