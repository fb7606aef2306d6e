"""Rate limits: exact counts in memcached, and the deliberate outage policy."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import falcon.testing
import pytest

from app.cache import Cache
from app.errors import RateLimited
from app.factory import create_app
from app.metrics import NullMetrics
from app.ratelimit import Limit, RateLimiter
from tests.support.api import new_user, register, unique_email
from tests.support.processes import free_port
from tests.support.waiting import fresh_window


def allowed(limiter, limit, identity):
    try:
        limiter.hit(limit, identity)
        return True
    except RateLimited:
        return False


def test_concurrent_hits_count_exactly(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)], timeout=2)
    # One instant for every hit: on a slow machine the 500 could straddle a
    # window boundary of the wall clock and count 100 in each window.
    limiter = RateLimiter(cache, NullMetrics(), clock=lambda: 6000.0)
    limit = Limit("exact", 100, 60, fail_closed=True)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: allowed(limiter, limit, "same-client"), range(500)))
    assert results.count(True) == 100
    cache.close()


def test_retry_after_is_the_rest_of_the_window(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)])
    limiter = RateLimiter(cache, NullMetrics(), clock=lambda: 6000 + 45.5)
    limit = Limit("window", 1, 60, fail_closed=True)
    limiter.hit(limit, "x")
    with pytest.raises(RateLimited) as info:
        limiter.hit(limit, "x")
    assert info.value.headers["Retry-After"] == "15"
    cache.close()


def test_sensitive_limits_hold_locally_when_memcached_is_down():
    dead = Cache([("127.0.0.1", free_port())], connect_timeout=0.05, timeout=0.05)
    limiter = RateLimiter(dead, NullMetrics())
    sensitive = Limit("login-test", 3, 60, fail_closed=True)
    general = Limit("general-test", 3, 60, fail_closed=False)
    assert [allowed(limiter, sensitive, "ip") for _ in range(5)] == [True] * 3 + [False] * 2
    assert all(allowed(limiter, general, "ip") for _ in range(10))


def test_unicode_and_ipv6_identities_are_safe_keys(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)])
    limiter = RateLimiter(cache, NullMetrics())
    limit = Limit("keys", 5, 60, fail_closed=True)
    for identity in ("2001:db8::1|ü@例え.jp", "a b\r\nc", "x" * 5000):
        assert allowed(limiter, limit, identity)
    cache.close()


def test_login_is_limited_per_ip_and_email(client):
    email = unique_email()
    register(client, email)
    fresh_window(needed=20)  # all the logins in one window
    statuses = [
        client.simulate_post("/v1/auth/login", json={"email": email, "password": "wrong guess"},
                             headers={"X-Real-IP": "192.0.2.10"}).status_code
        for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    limited = client.simulate_post("/v1/auth/login", json={"email": email, "password": "x" * 8},
                                   headers={"X-Real-IP": "192.0.2.10"})
    assert limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Another client address is counted separately.
    other = client.simulate_post("/v1/auth/login", json={"email": email, "password": "wrong guess"},
                                 headers={"X-Real-IP": "192.0.2.11"})
    assert other.status_code == 401


def test_general_limit_applies_per_client_and_can_be_disabled(config, db, cache_flushed):
    limited_app = create_app(replace(config, rate_limit_per_minute=3), configure_logging=False)
    client = falcon.testing.TestClient(limited_app)
    user = new_user(client)  # register + login are under their own limits
    statuses = [client.simulate_get("/v1/users/me", headers=user["headers"]).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert all(client.simulate_get("/healthz").status_code == 200 for _ in range(10))
    limited_app.deps.close()

    open_app = create_app(replace(config, rate_limit_per_minute=0), configure_logging=False)
    client = falcon.testing.TestClient(open_app)
    user = new_user(client)
    assert all(client.simulate_get("/v1/users/me", headers=user["headers"]).status_code == 200
               for _ in range(10))
    open_app.deps.close()
