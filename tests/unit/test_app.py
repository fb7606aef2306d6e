"""The assembled app on fakes: everything answered before the first query.

``create_app`` gets a pool that fails if used and an in-memory cache, so each
test shows its path needs no Postgres: health, the error envelope for
unrouted requests, token and role rejections, and body, query and cursor
validation.
"""

from __future__ import annotations

import json
import time

import falcon.testing
import pytest

from app import openapi, tokens
from app.config import Config
from app.factory import create_app
from app.routes import ROUTES
from tests.unit.fakes import FakeCache, RecordingMetrics, UnusablePool

SECRET = "unit-secret-" + "x" * 40
USER_ID = "0b5e8f0e-2c1a-4d3b-9f6e-1a2b3c4d5e6f"
PRODUCT_ID = "5d2f0c3e-7a1b-4c2d-8e3f-9a0b1c2d3e4f"
ENV = {
    "PEREGRINE_DATABASE_URL": "postgresql://peregrine@127.0.0.1:1/peregrine",
    "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:1",
    "PEREGRINE_JWT_SECRET": SECRET,
    "PEREGRINE_WORKERS": "1",
    "PEREGRINE_NEAR_CACHE_TTL": "0",
    "PEREGRINE_RATE_LIMIT_PER_MINUTE": "1000",
}
ORDER = {"items": [{"product_id": PRODUCT_ID, "quantity": 1}],
         "shipping_address": {"line1": "1 Main St", "city": "Oslo", "postal_code": "0150",
                              "country": "NO"}}


class Service:
    def __init__(self, **env):
        self.pool = UnusablePool()
        self.cache = FakeCache()
        self.metrics = RecordingMetrics()
        self.app = create_app(Config.from_env({**ENV, **env}), pool=self.pool,
                              cache=self.cache, metrics=self.metrics, configure_logging=False)
        self.client = falcon.testing.TestClient(self.app)

    def call(self, method, path, *, token=None, body=None, raw=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            raw = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        return self.client.simulate_request(method, path, headers=headers, body=raw, **kwargs)


@pytest.fixture(scope="module")
def shared():
    built = Service()  # assembling the app takes ~0.1 s: once per module
    yield built
    built.app.deps.close()


@pytest.fixture
def service(shared):
    shared.metrics.counters.clear()
    shared.metrics.timings.clear()
    yield shared
    assert shared.pool.attempts == 0, "a request reached the database"


def user_token(role="user", **kwargs):
    return tokens.issue_access_token(SECRET.encode(), USER_ID, role, **kwargs)


def error_of(result, status: int, code: str) -> dict:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"] == "application/json"
    body = result.json
    assert body["request_id"] == result.headers["X-Request-ID"]
    assert body["error"]["code"] == code
    return body["error"]


def test_liveness_answers_without_any_dependency(service):
    result = service.call("GET", "/healthz")
    assert (result.status_code, result.json) == (200, {"status": "ok"})
    head = service.call("HEAD", "/healthz")
    assert head.status_code == 200 and head.content == b""


def test_requests_are_counted_under_their_route_template(service):
    service.call("GET", "/healthz")
    service.call("GET", f"/v1/products/{PRODUCT_ID.upper()}x")
    assert service.metrics.counters["http.healthz.get.200"] == 1
    assert service.metrics.counters["http.v1.products._product_id_.get.404"] == 1
    assert [name for name, _ in service.metrics.timings] == [
        "http.healthz.get", "http.v1.products._product_id_.get"]


def test_the_served_document_is_the_generated_one(service):
    result = service.call("GET", "/openapi.json")
    assert result.status_code == 200
    assert result.json == openapi.build(ROUTES)


def test_an_unknown_path_is_a_404_envelope(service):
    error = error_of(service.call("GET", "/v2/nothing"), 404, "not_found")
    assert error["message"] == "no such resource"


def test_a_method_the_route_lacks_is_a_405_envelope(service):
    result = service.call("DELETE", "/healthz")
    error_of(result, 405, "method_not_allowed")
    assert "GET" in result.headers["Allow"]


def test_a_product_id_that_is_no_uuid_is_a_404_before_any_query(service):
    error_of(service.call("GET", "/v1/products/42"), 404, "not_found")


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Bearer not.a.jwt",
])
def test_a_missing_or_malformed_token_is_a_401_challenge(service, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    result = service.call("GET", "/v1/users/me", headers=headers)
    error_of(result, 401, "unauthorized")
    assert result.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_an_expired_token_is_told_to_refresh(service):
    expired = user_token(now=time.time() - tokens.ACCESS_TTL_SECONDS - 120)
    result = service.call("GET", "/v1/users/me", token=expired)
    assert "refresh it" in error_of(result, 401, "unauthorized")["message"]
    assert "refresh it" in result.headers["WWW-Authenticate"]
    assert service.metrics.counters["auth.token.invalid"] == 1


def test_a_token_signed_with_another_secret_is_told_to_log_in(service):
    forged = tokens.issue_access_token(b"z" * 48, USER_ID, "admin")
    result = service.call("GET", "/v1/users", token=forged)
    assert "log in again" in error_of(result, 401, "unauthorized")["message"]


def test_a_token_with_a_subject_we_never_issue_is_refused(service):
    odd = tokens.issue_access_token(SECRET.encode(), "1 OR 1=1", "user")
    error_of(service.call("GET", "/v1/users/me", token=odd), 401, "unauthorized")


def test_a_user_token_on_an_admin_route_is_a_403(service):
    error_of(service.call("GET", "/v1/users", token=user_token()), 403, "forbidden")


@pytest.mark.parametrize(("body", "field"), [
    ({**ORDER, "items": [{"product_id": PRODUCT_ID, "quantity": 0}]}, "$.items[0].quantity"),
    ({**ORDER, "items": []}, "$.items"),
    ({**ORDER, "coupon": "FREE"}, "$.coupon"),
    ({"items": ORDER["items"]}, "$.shipping_address"),
    ({**ORDER, "items": [{"product_id": "nope", "quantity": 1}]}, "$.items[0].product_id"),
    ({**ORDER, "shipping_address": {**ORDER["shipping_address"], "country": "NO\n"}},
     "$.shipping_address.country"),
])
def test_an_invalid_order_is_a_422_naming_the_field(service, body, field):
    result = service.call("POST", "/v1/orders", token=user_token(), body=body)
    error = error_of(result, 422, "validation_failed")
    assert error["details"][0]["field"] == field


def test_a_nul_in_free_text_is_a_422_in_words(service):
    body = {**ORDER, "shipping_address": {**ORDER["shipping_address"], "city": "Os\u0000lo"}}
    error = error_of(service.call("POST", "/v1/orders", token=user_token(), body=body),
                     422, "validation_failed")
    assert "NUL" in error["message"]
    assert error["details"] == [{"field": "$.shipping_address.city",
                                 "message": "must not contain NUL (\\u0000) characters"}]


@pytest.mark.parametrize(("raw", "headers", "status", "code"), [
    (b"", {"Content-Type": "application/json"}, 400, "bad_request"),
    (b"{", {"Content-Type": "application/json"}, 400, "bad_request"),
    (json.dumps(ORDER).encode(), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b" " * (64 * 1024 + 1), {"Content-Type": "application/json"}, 413, "payload_too_large"),
])
def test_unreadable_bodies_are_refused_before_any_query(service, raw, headers, status, code):
    result = service.call("POST", "/v1/orders", token=user_token(), raw=raw, headers=headers)
    error_of(result, status, code)


def test_an_invalid_registration_is_a_422_before_any_query(service):
    body = {"email": "not an email", "password": "long enough password", "name": "N"}
    error = error_of(service.call("POST", "/v1/auth/register", body=body),
                     422, "validation_failed")
    assert error["details"][0]["field"] == "$.email"


@pytest.mark.parametrize(("query", "field"), [
    ("cursor=garbage!", "$.cursor"),
    ("cursor=eyJhIjoxfQ", "$.cursor"),  # base64 of {"a":1}: the wrong shape
    ("limit=0", "$.limit"),
    ("limit=101", "$.limit"),
])
def test_bad_paging_parameters_are_a_422_before_any_query(service, query, field):
    result = service.call("GET", "/v1/orders", token=user_token(), query_string=query)
    error = error_of(result, 422, "validation_failed")
    assert error["details"][0]["field"] == field


def test_the_general_rate_limit_is_counted_in_the_cache():
    built = Service(PEREGRINE_RATE_LIMIT_PER_MINUTE="2")
    try:
        statuses = [built.call("GET", "/v1/products/42").status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
        limited = built.call("GET", "/v1/products/42")
        error_of(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert built.call("GET", "/healthz").status_code == 200  # probes are not limited
    finally:
        built.app.deps.close()


def test_the_general_rate_limit_fails_open_when_the_cache_is_down():
    built = Service(PEREGRINE_RATE_LIMIT_PER_MINUTE="2")
    built.cache.down = True
    try:
        statuses = {built.call("GET", "/v1/products/42").status_code for _ in range(5)}
        assert statuses == {404}
    finally:
        built.app.deps.close()


@pytest.mark.parametrize("declaration", [
    {"access": "user"},
    {"access": "admin"},
    {"access": "public", "address_limit": object()},
])
def test_only_a_public_read_without_an_address_limit_may_be_replayable(declaration):
    from app.operations import Operation

    with pytest.raises(ValueError, match="replayable"):
        Operation(summary="s", replayable=True, **declaration)


def test_the_catalog_reads_are_the_replayable_routes_and_none_under_the_general_limit():
    from dataclasses import replace

    from app.factory import _replayable

    limited = Config.from_env(ENV)
    assert limited.rate_limit_per_minute > 0
    assert _replayable(ROUTES, limited) == []
    open_config = replace(limited, rate_limit_per_minute=0)
    assert _replayable(ROUTES, open_config) == [
        "/v1/categories", "/v1/products", "/v1/products/{product_id}"]
