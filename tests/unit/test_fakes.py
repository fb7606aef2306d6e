"""The fakes stay true to what they stand in for, so tests on them mean something."""

from __future__ import annotations

import inspect

import pytest

from app.cache import Cache
from tests.unit.fakes import Clock, FakeCache

TEST_HELPERS = {"raw", "expiry"}


def public(cls) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(public(FakeCache) - TEST_HELPERS))
def test_the_fake_cache_has_the_real_caches_signature(name):
    real, fake = getattr(Cache, name), getattr(FakeCache, name)
    if isinstance(real, property):
        assert isinstance(fake, property)
        return
    assert inspect.signature(fake).parameters.keys() == inspect.signature(real).parameters.keys()


def test_add_stores_only_when_absent():
    cache = FakeCache()
    assert cache.add("k", b"1", 10) is True
    assert cache.add("k", b"2", 10) is False
    assert cache.get("k") == b"1"
    cache.down = True
    assert cache.add("other", b"1", 10) is None


def test_cas_fails_after_any_store_or_delete():
    cache = FakeCache()
    cache.set("k", b"1", 10)
    _, token = cache.gets("k")
    assert cache.cas("k", b"2", token, 10) is True
    assert cache.cas("k", b"3", token, 10) is False  # the token was spent by the store
    _, token = cache.gets("k")
    cache.incr("k")  # an incr is a store too
    assert cache.cas("k", b"4", token, 10) is False
    _, token = cache.gets("k")
    cache.delete("k")
    assert cache.cas("k", b"5", token, 10) is False
    assert cache.get("k") is None


def test_entries_expire_on_the_clock():
    clock = Clock()
    cache = FakeCache(clock)
    cache.set("k", b"1", 10)
    clock.now += 9.9
    assert cache.get("k") == b"1"
    clock.now += 0.1
    assert cache.get("k") is None and cache.add("k", b"2", 10) is True


def test_incr_needs_an_existing_number():
    cache = FakeCache()
    assert cache.incr("k") is None
    cache.set("k", b"41", 0)
    assert cache.incr("k") == 42
    cache.set("k", b"x", 0)
    assert cache.incr("k") is None
