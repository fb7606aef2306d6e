"""Read-through caching on a fake memcached: fills, staleness, invalidation races, outages."""

from __future__ import annotations

import gevent
import pytest

from app.readthrough import MISSING, PLACEHOLDER, ReadThrough
from tests.unit.fakes import Clock, FakeCache

KEY = "peregrine:v1:product:1"
TTL, NEGATIVE_TTL = 60, 10


class Loader:
    """A load function that counts its calls; ``during`` runs inside the load."""

    def __init__(self, value=b"row-1"):
        self.value = value
        self.calls = 0
        self.during = None

    def __call__(self):
        self.calls += 1
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return self.value


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def reads(cache, metrics, clock):
    return ReadThrough(cache, metrics, clock=clock)


def get(reads, load):
    return reads.get(KEY, load, TTL, NEGATIVE_TTL, "product")


def test_a_cold_miss_loads_once_and_stores_the_record(reads, cache, metrics, clock):
    load = Loader()
    assert get(reads, load) == b"row-1"
    assert get(reads, load) == b"row-1"
    assert load.calls == 1
    assert cache.raw(KEY) == b"%d:+row-1" % (clock.now + TTL)
    assert cache.expiry(KEY) == clock.now + 2 * TTL  # hard TTL: twice the soft one
    assert metrics.counters == {"cache.product.miss": 1, "cache.product.hit": 1}


def test_does_not_exist_is_cached_for_the_negative_ttl(reads, cache, clock):
    load = Loader(MISSING)
    assert get(reads, load) is MISSING
    assert get(reads, load) is MISSING
    assert load.calls == 1
    assert cache.raw(KEY) == b"%d:-" % (clock.now + NEGATIVE_TTL)


def test_a_stale_record_is_refreshed_by_one_caller(reads, cache, clock, metrics):
    get(reads, Loader(b"old"))
    clock.now += TTL + 1
    fresh = Loader(b"new")
    assert get(reads, fresh) == b"new"
    assert fresh.calls == 1
    assert cache.raw(KEY) == b"%d:+new" % (clock.now + TTL)
    assert cache.raw(f"{KEY}:lock") is None  # the refresh lock is released


def test_others_serve_the_stale_value_while_one_refreshes(reads, cache, clock, metrics):
    get(reads, Loader(b"old"))
    clock.now += TTL + 1
    cache.add(f"{KEY}:lock", b"1", 5)  # another process is refreshing
    load = Loader(b"new")
    assert get(reads, load) == b"old"
    assert load.calls == 0
    assert metrics.counters["cache.product.stale"] == 1


def test_an_invalidation_during_a_cold_load_is_not_overwritten(reads, cache):
    load = Loader(b"before-commit")
    load.during = lambda: reads.forget(KEY)  # a writer commits and deletes meanwhile
    assert get(reads, load) == b"before-commit"  # this caller may see its own read
    assert cache.raw(KEY) is None  # but it is not stored after the delete
    assert cache.invalidated == [KEY]
    after = Loader(b"after-commit")
    assert get(reads, after) == b"after-commit" and after.calls == 1


def test_an_invalidation_during_a_refresh_is_not_overwritten(reads, cache, clock):
    get(reads, Loader(b"old"))
    clock.now += TTL + 1
    load = Loader(b"before-commit")
    load.during = lambda: cache.delete(KEY)
    assert get(reads, load) == b"before-commit"
    assert cache.raw(KEY) is None


def test_a_concurrent_store_makes_the_fill_lose_its_cas(reads, cache):
    load = Loader(b"mine")
    load.during = lambda: cache.set(KEY, b"9999999999:+theirs", 100)
    assert get(reads, load) == b"mine"
    assert cache.raw(KEY) == b"9999999999:+theirs"


class AfterAdd(FakeCache):
    """A fake memcached where something else happens right after our ``add``."""

    then = None

    def add(self, k, value, ttl):
        added = super().add(k, value, ttl)
        if self.then is not None:
            then, self.then = self.then, None
            then()
        return added


def test_a_placeholder_re_added_after_a_delete_is_still_filled(clock, metrics):
    cache = AfterAdd(clock)
    reads = ReadThrough(cache, metrics, clock=clock)
    # A writer deletes our placeholder and another reader adds its own before
    # our gets: our load starts after that delete, so filling it is safe.
    cache.then = lambda: (cache.delete(KEY), cache.add(KEY, PLACEHOLDER, 10))
    assert get(reads, Loader(b"row")) == b"row"
    assert cache.raw(KEY) == b"%d:+row" % (clock.now + TTL)


def test_a_record_stored_between_our_add_and_gets_is_kept(clock, metrics):
    cache = AfterAdd(clock)
    reads = ReadThrough(cache, metrics, clock=clock)
    theirs = b"%d:+theirs" % (clock.now + TTL)
    cache.then = lambda: (cache.delete(KEY), cache.set(KEY, theirs, 100))
    assert get(reads, Loader(b"mine")) == b"mine"
    assert cache.raw(KEY) == theirs


def test_a_failed_load_removes_the_placeholder(reads, cache):
    def broken():
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        get(reads, broken)
    assert cache.raw(KEY) is None  # nobody waits on a fill that will never come
    assert get(reads, Loader(b"row")) == b"row"


def test_a_record_this_code_did_not_write_is_replaced(reads, cache, clock):
    cache.set(KEY, b"legacy format", 100)
    load = Loader(b"row")
    assert get(reads, load) == b"row"
    assert load.calls == 1
    assert cache.raw(KEY) == b"%d:+row" % (clock.now + TTL)


def test_a_reader_that_finds_a_fill_in_progress_waits_for_it(reads, cache, metrics, clock):
    cache.add(KEY, PLACEHOLDER, 10)
    record = b"%d:+filled-by-the-winner" % (clock.now + TTL)
    winner = gevent.spawn_later(0.01, cache.set, KEY, record, 100)
    load = Loader()
    assert get(reads, load) == b"filled-by-the-winner"
    assert load.calls == 0
    assert metrics.counters["cache.product.waited"] == 1
    winner.join()


def test_a_reader_gives_up_waiting_and_loads_without_storing(reads, cache):
    cache.add(KEY, PLACEHOLDER, 10)  # a winner that never finishes
    load = Loader(b"row")
    assert get(reads, load) == b"row"
    assert load.calls == 1
    assert cache.raw(KEY) == PLACEHOLDER  # the winner's fill is not taken over


def test_with_the_cache_down_every_read_loads_and_nothing_fails(reads, cache):
    cache.down = True
    load = Loader(b"row")
    assert get(reads, load) == b"row"
    assert get(reads, load) == b"row"
    assert load.calls == 2
    cache.down = False
    assert cache.raw(KEY) is None


def test_forget_invalidates_the_key(reads, cache):
    get(reads, Loader())
    reads.forget(KEY)
    assert cache.raw(KEY) is None and cache.invalidated == [KEY]
