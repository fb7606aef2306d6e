"""CORS: off by default; PEREGRINE_CORS_ORIGINS lets the listed browser origins in."""

from __future__ import annotations

import http.client

import falcon.testing
import pytest

from app.config import Config
from app.cors import CORS, EXPOSED_HEADERS
from app.factory import create_app
from tests.support.api import new_user

SHOP = "https://shop.example.com"
ELSEWHERE = "https://evil.example.net"


@pytest.fixture
def cors_client(base_env, db, cache_flushed):
    config = Config.from_env({**base_env, "PEREGRINE_CORS_ORIGINS": f"{SHOP},http://localhost:3000"})
    application = create_app(config, configure_logging=False)
    yield falcon.testing.TestClient(application)
    application.deps.close()


def vary(result) -> list[str]:
    return [v.strip().lower() for v in result.headers.get("Vary", "").split(",") if v.strip()]


def test_off_by_default_nothing_is_mounted_or_sent(app, client):
    assert not any(isinstance(m, CORS) for m in app._unprepared_middleware)
    result = client.simulate_get("/v1/products", headers={"Origin": SHOP})
    assert result.status_code == 200
    assert "Access-Control-Allow-Origin" not in result.headers
    assert "origin" not in vary(result)
    preflight = client.simulate_options("/v1/orders", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Methods" not in preflight.headers


def test_an_allowed_origin_is_answered_with_itself_and_the_readable_headers(cors_client):
    result = cors_client.simulate_get("/v1/products", headers={"Origin": SHOP})
    assert result.status_code == 200
    assert result.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Access-Control-Allow-Credentials" not in result.headers  # bearer tokens, no cookies
    exposed = {h.strip().lower()
               for h in result.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "location", "retry-after", "ratelimit-limit", "ratelimit-remaining",
            "ratelimit-reset", "x-request-id", "traceparent"} <= exposed
    assert exposed == {h.lower() for h in EXPOSED_HEADERS}
    assert "origin" in vary(result)


def test_an_origin_not_listed_gets_no_grant(cors_client):
    for origin in (ELSEWHERE, SHOP + ".evil.net", SHOP.upper(), "null"):
        result = cors_client.simulate_get("/v1/products", headers={"Origin": origin})
        assert result.status_code == 200
        assert "Access-Control-Allow-Origin" not in result.headers, origin
        assert "origin" in vary(result)  # the answer depends on the Origin either way


def test_a_preflight_needs_no_token_and_grants_what_was_asked(cors_client):
    result = cors_client.simulate_options("/v1/orders", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})
    assert result.status_code == 200, result.text  # not the 401 of a tokenless POST
    assert result.headers["Access-Control-Allow-Origin"] == SHOP
    methods = {m.strip() for m in result.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST"} <= methods
    assert result.headers["Access-Control-Allow-Headers"] == (
        "authorization, content-type, idempotency-key")
    assert int(result.headers["Access-Control-Max-Age"]) > 0


def test_a_preflight_from_an_origin_not_listed_is_not_granted(cors_client):
    result = cors_client.simulate_options("/v1/orders", headers={
        "Origin": ELSEWHERE, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in result.headers
    assert "Access-Control-Allow-Methods" not in result.headers


def test_errors_carry_the_grant_so_the_page_can_read_them(cors_client):
    result = cors_client.simulate_post("/v1/orders", headers={"Origin": SHOP}, json={})
    assert result.status_code == 401
    assert result.headers["Access-Control-Allow-Origin"] == SHOP
    assert "www-authenticate" in result.headers["Access-Control-Expose-Headers"].lower()


def test_a_created_resource_exposes_its_location(cors_client, db):
    admin = new_user(cors_client, "admin", db)
    result = cors_client.simulate_post(
        "/v1/products", headers={**admin["headers"], "Origin": SHOP},
        json={"sku": "CORS-1", "name": "Hammer", "price": "1.00"})
    assert result.status_code == 201, result.text
    assert result.headers["Access-Control-Allow-Origin"] == SHOP
    assert result.headers["Location"] == f"/v1/products/{result.json['id']}"
    assert "location" in result.headers["Access-Control-Expose-Headers"].lower()


def test_the_served_preflight_works_through_the_http_worker(live_server_factory):
    server = live_server_factory(PEREGRINE_CORS_ORIGINS=SHOP)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("OPTIONS", "/v1/products", headers={
            "Origin": SHOP, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    assert answer.status == 200
    assert answer.getheader("Access-Control-Allow-Origin") == SHOP
    assert "POST" in answer.getheader("Access-Control-Allow-Methods")
