"""Platform behaviour every route shares: envelope, ids, limits, docs."""

import json

import falcon
import falcon.testing
import msgspec
import pytest

from app.media import MAX_BODY_BYTES
from app.operations import PUBLIC, operation
from app.routes import ROUTES


class Echo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str = msgspec.field(default="")
    count: int = 1


class EchoResource:
    """A body-reading resource mounted on the real app to exercise the pipeline."""

    def __init__(self, services=None):
        pass

    @operation(access=PUBLIC, summary="echo", body=Echo)
    def on_post(self, req, resp, body: Echo):
        resp.media = {"name": body.name, "count": body.count}


class BrokenResource:
    @operation(access=PUBLIC, summary="broken")
    def on_get(self, req, resp):
        raise RuntimeError("secret internals: password=hunter2")


@pytest.fixture
def echo_client(app):
    app.add_route("/_echo", EchoResource())
    app.add_route("/_broken", BrokenResource())
    return falcon.testing.TestClient(app)


def assert_envelope(result, status, code):
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert set(body) == {"error", "request_id", "trace_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == result.headers["x-request-id"]
    assert body["trace_id"] == result.headers["traceparent"].split("-")[1]
    return body


def test_healthz(client):
    result = client.simulate_get("/healthz")
    assert result.status_code == 200
    assert result.json == {"status": "ok"}


def test_readyz_reports_database_and_cache(client):
    result = client.simulate_get("/readyz")
    assert result.status_code == 200
    assert result.json == {"status": "ok", "database": "ok", "cache": "ok"}


def test_unknown_route_is_404_envelope(client):
    assert_envelope(client.simulate_get("/no/such/thing"), 404, "not_found")


def test_wrong_method_is_405_envelope_with_allow(client):
    result = client.simulate_delete("/healthz")
    assert_envelope(result, 405, "method_not_allowed")
    assert "GET" in result.headers["allow"]


def test_xml_accept_still_gets_json_errors(client):
    result = client.simulate_get("/nope", headers={"Accept": "application/xml"})
    assert_envelope(result, 404, "not_found")


def test_malformed_json_is_400(echo_client):
    result = echo_client.simulate_post("/_echo", body=b'{"name": ', content_type="application/json")
    assert_envelope(result, 400, "bad_request")


def test_invalid_utf8_is_400(echo_client):
    result = echo_client.simulate_post("/_echo", body=b'{"name": "\xff"}',
                                       content_type="application/json")
    assert_envelope(result, 400, "bad_request")


def test_unknown_field_is_422_with_its_path(echo_client):
    result = echo_client.simulate_post("/_echo", json={"name": "a", "role": "admin"})
    body = assert_envelope(result, 422, "validation_failed")
    assert body["error"]["details"][0]["field"] == "$.role"


def test_wrong_type_is_422_with_its_path(echo_client):
    result = echo_client.simulate_post("/_echo", json={"count": "three"})
    body = assert_envelope(result, 422, "validation_failed")
    assert body["error"]["details"] == [
        {"field": "$.count", "message": "must be a whole number, not a string"}]


def test_non_object_body_is_422(echo_client):
    assert_envelope(echo_client.simulate_post("/_echo", json=[1, 2]), 422, "validation_failed")


def test_other_content_type_is_415(echo_client):
    result = echo_client.simulate_post("/_echo", body=b"name=x", content_type="text/plain")
    assert_envelope(result, 415, "unsupported_media_type")


def test_json_with_utf8_charset_is_accepted(echo_client):
    result = echo_client.simulate_post("/_echo", body=b'{"name":"ok"}',
                                       content_type="application/json; charset=UTF-8")
    assert result.status_code == 200
    assert result.json == {"name": "ok", "count": 1}


def test_json_with_other_charset_is_415(echo_client):
    result = echo_client.simulate_post("/_echo", body=b'{"name":"ok"}',
                                       content_type="application/json; charset=latin-1")
    assert_envelope(result, 415, "unsupported_media_type")


def test_empty_body_is_400(echo_client):
    result = echo_client.simulate_post("/_echo", body=b"", content_type="application/json")
    assert_envelope(result, 400, "bad_request")


def test_body_over_64_kib_is_413(echo_client):
    body = json.dumps({"name": "x" * MAX_BODY_BYTES}).encode()
    result = echo_client.simulate_post("/_echo", body=body, content_type="application/json")
    assert_envelope(result, 413, "payload_too_large")


def test_body_of_exactly_64_kib_is_accepted(echo_client):
    padding = MAX_BODY_BYTES - len(b'{"name":""}')
    body = b'{"name":"' + b"x" * padding + b'"}'
    assert len(body) == MAX_BODY_BYTES
    result = echo_client.simulate_post("/_echo", body=body, content_type="application/json")
    assert result.status_code == 200


def test_unexpected_exception_is_a_generic_500(echo_client):
    result = echo_client.simulate_get("/_broken")
    body = assert_envelope(result, 500, "internal")
    assert "hunter2" not in result.text and "Traceback" not in result.text
    assert body["error"]["message"] == "internal error"


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_C-9", "x" * 128])
def test_valid_request_id_is_echoed(client, incoming):
    result = client.simulate_get("/healthz", headers={"X-Request-ID": incoming})
    assert result.headers["x-request-id"] == incoming


@pytest.mark.parametrize("incoming", ["", "x" * 129, 'bad id', '\n{"level":"error"}', "ü"])
def test_invalid_request_id_is_replaced(client, incoming):
    result = client.simulate_get("/healthz", headers={"X-Request-ID": incoming})
    replaced = result.headers["x-request-id"]
    assert replaced != incoming and len(replaced) == 32
    int(replaced, 16)


def test_every_response_gets_a_fresh_request_id(client):
    ids = {client.simulate_get("/healthz").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_openapi_document_covers_every_route(client):
    result = client.simulate_get("/openapi.json")
    assert result.status_code == 200
    document = result.json
    assert document["openapi"] == "3.1.0"
    # Every route but the ones a resource keeps out on purpose (the docs page's assets).
    documented = {route.template for route in ROUTES
                  if getattr(route.resource, "in_openapi", True)}
    assert documented < {route.template for route in ROUTES}
    assert set(document["paths"]) == documented
    assert "ErrorEnvelope" in document["components"]["schemas"]
    for item in document["paths"].values():
        for op in item.values():
            assert op["responses"], op
            assert "500" in op["responses"]


def test_docs_page_renders_the_openapi_document(client):
    result = client.simulate_get("/docs")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in result.text


def test_every_responder_declares_its_access():
    from app.operations import operation_of, responders

    for route in ROUTES:
        for method in responders(route.resource):
            assert operation_of(route.resource, method) is not None, (method, route.template)


def test_undeclared_responder_refuses_to_start(config, monkeypatch):
    from app import factory
    from app.routes import Route

    class Undeclared:
        def __init__(self, services):
            pass

        def on_get(self, req, resp):
            pass

    monkeypatch.setattr(factory, "ROUTES", (Route("/undeclared", Undeclared),))
    with pytest.raises(RuntimeError, match="no @operation"):
        factory.create_app(config, configure_logging=False)


def test_readyz_is_503_with_retry_after_when_the_pool_is_exhausted(config, db):
    from dataclasses import replace

    from app.factory import create_app

    app = create_app(replace(config, db_pool_size=1, db_pool_timeout=0.2),
                     configure_logging=False)
    held = app.deps.pool.acquire()
    try:
        result = falcon.testing.TestClient(app).simulate_get("/readyz")
    finally:
        app.deps.pool.release(held)
        app.deps.close()
    assert_envelope(result, 503, "unavailable")
    assert result.headers["retry-after"]


def test_nul_characters_in_text_are_422_wherever_they_come_from(client):
    register = client.simulate_post("/v1/auth/register", json={
        "email": "nul@example.test", "password": "password1", "name": "a\u0000b"})
    login = client.simulate_post("/v1/auth/login",
                                 json={"email": "n\u0000@example.test", "password": "password1"})
    search = client.simulate_get("/v1/products", query_string="q=a%00b")
    for result in (register, login, search):
        assert_envelope(result, 422, "validation_failed")
        assert "NUL" in result.json["error"]["message"]
