"""Fixed-window rate limits on a fake memcached: exact counts, windows, outage policy."""

from __future__ import annotations

import pytest

from app.cache import digest
from app.errors import RateLimited
from app.ratelimit import Limit, RateLimiter
from tests.unit.fakes import Clock, FakeCache

STRICT = Limit("login", 3, 60, fail_closed=True)
LENIENT = Limit("general", 3, 60, fail_closed=False)


@pytest.fixture
def clock():
    return Clock(now=6000.0)  # the start of a 60 s window


@pytest.fixture
def limiter(cache, metrics, clock):
    return RateLimiter(cache, metrics, clock=clock)


def hits(limiter, limit, identity="1.2.3.4", times=1):
    """How many of ``times`` hits were let through."""
    allowed = 0
    for _ in range(times):
        try:
            limiter.hit(limit, identity)
        except RateLimited:
            continue
        allowed += 1
    return allowed


def test_exactly_the_limit_is_allowed_per_window(limiter, metrics):
    assert hits(limiter, STRICT, times=5) == 3
    assert metrics.counters == {"ratelimit.login.limited": 2}


def test_retry_after_is_the_rest_of_the_window(limiter, clock):
    hits(limiter, STRICT, times=3)
    clock.now += 42.5
    with pytest.raises(RateLimited) as info:
        limiter.hit(STRICT, "1.2.3.4")
    assert info.value.headers["Retry-After"] == "18"
    clock.now += 17.4  # 0.1 s left: still at least one second
    with pytest.raises(RateLimited) as info:
        limiter.hit(STRICT, "1.2.3.4")
    assert info.value.headers["Retry-After"] == "1"


def test_a_new_window_starts_from_zero(limiter, clock):
    assert hits(limiter, STRICT, times=4) == 3
    clock.now += 60
    assert hits(limiter, STRICT, times=4) == 3


def test_identities_and_scopes_are_counted_apart(limiter):
    assert hits(limiter, STRICT, "a", times=3) == 3
    assert hits(limiter, STRICT, "b", times=3) == 3
    assert hits(limiter, LENIENT, "a", times=3) == 3


def test_the_counter_key_holds_a_digest_and_expires_after_its_window(limiter, cache, clock):
    limiter.hit(STRICT, "user@example.com|10.0.0.1")
    (counter,) = {k for _, k in cache.calls}
    assert counter == f"peregrine:v1:rl:login:{digest('user@example.com|10.0.0.1')}:100"
    assert "example.com" not in counter
    assert cache.expiry(counter) == clock.now + 65


def test_a_zero_limit_is_off_and_touches_no_cache(limiter, cache):
    off = Limit("off", 0, 60, fail_closed=True)
    assert hits(limiter, off, times=100) == 100
    assert cache.calls == []


class CreatedConcurrently(FakeCache):
    """Another request creates the counter between our failed incr and our add."""

    def incr(self, k, delta=1):
        count = super().incr(k, delta)
        if count is None and self.raw(k) is None:
            self._store(k, b"1", 60)  # not one of our calls
        return count


def test_a_counter_created_concurrently_is_counted_not_reset(clock, metrics):
    cache = CreatedConcurrently(clock)
    limiter = RateLimiter(cache, metrics, clock=clock)
    limiter.hit(STRICT, "x")
    assert [method for method, _ in cache.calls] == ["incr", "add", "incr"]
    assert cache.raw(cache.calls[0][1]) == b"2"  # theirs and ours


def test_with_the_cache_down_a_sensitive_limit_counts_in_the_process(limiter, cache):
    cache.down = True
    assert hits(limiter, STRICT, times=5) == 3


def test_with_the_cache_down_the_general_limit_fails_open(limiter, cache, metrics):
    cache.down = True
    assert hits(limiter, LENIENT, times=50) == 50
    assert metrics.counters == {}


def test_the_local_fallback_forgets_old_windows(limiter, cache, clock):
    cache.down = True
    hits(limiter, STRICT, "a", times=3)
    hits(limiter, STRICT, "b", times=2)
    clock.now += 60
    assert hits(limiter, STRICT, "a", times=4) == 3
    assert len(limiter._local) == 1  # only the current window's counter for "a"


def test_the_cache_coming_back_counts_there_again(limiter, cache):
    cache.down = True
    hits(limiter, STRICT, times=3)
    cache.down = False
    assert hits(limiter, STRICT, times=4) == 3  # memcached never saw the outage's hits


def test_each_counted_hit_reports_the_quota_left(limiter, clock):
    clock.now += 15.2
    quotas = [limiter.hit(STRICT, "1.2.3.4") for _ in range(3)]
    assert [q.remaining for q in quotas] == [2, 1, 0]
    assert {(q.limit, q.reset) for q in quotas} == {(3, 45)}
    assert quotas[0].headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "2",
                                   "RateLimit-Reset": "45"}


def test_a_429_carries_the_ratelimit_fields_next_to_retry_after(limiter, clock):
    hits(limiter, STRICT, times=3)
    clock.now += 42.5
    with pytest.raises(RateLimited) as info:
        limiter.hit(STRICT, "1.2.3.4")
    assert info.value.headers == {"Retry-After": "18", "RateLimit-Limit": "3",
                                  "RateLimit-Remaining": "0", "RateLimit-Reset": "18"}


def test_no_quota_is_reported_when_it_is_unknown_or_off(limiter, cache):
    assert limiter.hit(Limit("off", 0, 60, fail_closed=False), "1.2.3.4") is None
    cache.down = True
    assert limiter.hit(LENIENT, "1.2.3.4") is None  # failed open: the count is unknown
    assert limiter.hit(STRICT, "1.2.3.4").remaining == 2  # counted in the process
