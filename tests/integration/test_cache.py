"""The memcached facade against real servers."""

import time

from app.cache import Cache
from app.manage.services import MemcachedServer
from tests.support.processes import free_port


def test_add_and_incr_report_what_really_happened(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)])
    assert cache.add("t:add", b"1", 60) is True
    assert cache.add("t:add", b"2", 60) is False
    assert cache.incr("t:add") == 2
    assert cache.incr("t:missing") is None
    cache.close()


def test_dead_server_fails_open_and_trips_the_breaker():
    cache = Cache([("127.0.0.1", free_port())], connect_timeout=0.05, timeout=0.05,
                  breaker_threshold=3, breaker_reset=30)
    started = time.monotonic()
    for _ in range(3):
        assert cache.get("t:k") is None
    assert not cache.available
    tripped = time.monotonic()
    for _ in range(1000):  # an open breaker costs nothing per call
        assert cache.get("t:k") is None
        assert cache.add("t:k", b"v", 10) is None
    assert time.monotonic() - tripped < 0.5
    assert tripped - started < 2
    assert cache.ping() is False


def test_keys_spread_over_several_servers(memcached, cache_flushed, run_dir):
    second = MemcachedServer(run_dir / "memcached-second")
    second.start()
    try:
        cache = Cache([("127.0.0.1", memcached.port), ("127.0.0.1", second.port)])
        for index in range(200):
            cache.set(f"t:spread:{index}", str(index).encode(), 60)
        assert all(cache.get(f"t:spread:{i}") == str(i).encode() for i in range(200))
        from pymemcache.client.base import Client

        on_first = sum(
            Client(("127.0.0.1", memcached.port)).get(f"t:spread:{i}") is not None
            for i in range(200))
        assert 40 < on_first < 160, "keys did not spread over both servers"
        cache.close()
    finally:
        second.stop()
