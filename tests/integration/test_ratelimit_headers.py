"""RateLimit-Limit / -Remaining / -Reset next to Retry-After, and on counted answers."""

from __future__ import annotations

from dataclasses import replace

import falcon.testing
import pytest

from app.factory import create_app
from tests.support.api import new_user, register, unique_email
from tests.support.waiting import fresh_window

FIELDS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture
def limited(config, db, cache_flushed):
    application = create_app(replace(config, rate_limit_per_minute=3), configure_logging=False)
    yield falcon.testing.TestClient(application)
    application.deps.close()


def test_counted_answers_say_how_many_requests_are_left(limited):
    user = new_user(limited)
    answers = [limited.simulate_get("/v1/users/me", headers=user["headers"]) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["RateLimit-Limit"] for a in answers} == {"3"}
    for answer in answers:
        assert 1 <= int(answer.headers["RateLimit-Reset"]) <= 60
    refused = answers[-1]
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]


def test_a_route_outside_the_general_limit_sends_none(limited):
    answer = limited.simulate_get("/healthz")
    assert answer.status_code == 200
    assert not any(name in answer.headers for name in FIELDS)


def test_an_address_limit_429_reports_that_limit(client):
    email = unique_email()
    register(client, email)
    fresh_window(needed=20)  # all the logins in one window
    answers = [client.simulate_post("/v1/auth/login",
                                    json={"email": email, "password": "wrong guess"},
                                    headers={"X-Real-IP": "192.0.2.20"}) for _ in range(11)]
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Limit"] == "10"  # login per address and email
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]


def test_no_fields_when_the_general_limit_is_off(config, db, cache_flushed):
    application = create_app(replace(config, rate_limit_per_minute=0), configure_logging=False)
    client = falcon.testing.TestClient(application)
    try:
        answer = client.simulate_get("/v1/products")
        assert answer.status_code == 200
        assert not any(name in answer.headers for name in FIELDS)
    finally:
        application.deps.close()


def test_the_document_declares_them_where_they_are_sent(client):
    document = client.simulate_get("/openapi.json").json
    me = document["paths"]["/v1/users/me"]["get"]["responses"]
    for status in ("200", "429"):
        assert set(FIELDS) <= set(me[status]["headers"]), status
    assert not set(FIELDS) & set(document["paths"]["/healthz"]["get"]["responses"]["200"]
                                 .get("headers", {}))
