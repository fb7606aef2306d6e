"""/openapi.json: a valid OpenAPI 3.1 document that says what the server does.

openapi-spec-validator checks the document against the specification; the
rest checks what a client generator relies on, and that the headers and
statuses the document promises are the ones the server sends.
"""

from __future__ import annotations

import re
import uuid

import msgspec
import pytest
from openapi_spec_validator import validate

from app import openapi
from app.operations import operation_of, responders
from app.routes import ROUTES
from tests.support.api import PASSWORD, new_user, unique_email
from tests.support.catalog import create_product

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def document(client):
    served = client.simulate_get("/openapi.json")
    assert served.status_code == 200
    return served.json


def operations(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def operations_by_key(document):
    return (((method, path), op) for method, path, op in operations(document))


def parameters(document, op) -> list[dict]:
    """An operation's parameters with component references resolved."""
    shared = document["components"]["parameters"]
    return [shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            for p in op.get("parameters", [])]


def header_names(response: dict) -> set[str]:
    return set(response.get("headers", {}))


def documented(document, parameter: str) -> set[tuple[str, str]]:
    return {(method, path) for method, path, op in operations(document)
            if any(p["name"] == parameter for p in parameters(document, op))}


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises with the offending node when invalid


def test_the_served_document_is_the_one_built_from_the_routes(document):
    assert document == openapi.build(ROUTES)


def test_the_reference_files_are_not_api_operations(document):
    assert "/docs" in document["paths"]
    assert not [path for path in document["paths"] if path.startswith("/docs/")]


def test_no_query_parameter_offers_null(document):
    offending = [
        (method, path, p["name"])
        for method, path, op in operations(document) for p in parameters(document, op)
        if p["in"] == "query" and "null" in repr(p["schema"])
    ]
    assert offending == []


def test_every_id_is_a_uuid(document):
    loose = [(path, p["name"]) for _, path, op in operations(document)
             for p in parameters(document, op)
             if p["name"].endswith("_id") and p["schema"].get("format") != "uuid"]
    # The ids that are not UUIDs: a request's (hex, any client-chosen token)
    # and its W3C trace id (32 hex digits).
    envelope = document["components"]["schemas"]["ErrorEnvelope"]["properties"]
    assert "format" not in envelope["request_id"]
    assert "format" not in envelope["trace_id"]
    for name, schema in document["components"]["schemas"].items():
        for field, spec in schema.get("properties", {}).items():
            branches = spec.get("anyOf", [spec])
            is_row_id = field == "id" or (
                field.endswith("_id") and field not in ("request_id", "trace_id"))
            if is_row_id and not any(branch.get("format") == "uuid" for branch in branches):
                loose.append((name, field))
    assert loose == []


def test_every_response_declares_its_headers(document):
    missing = []
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            expected = {"X-Request-ID"}
            if status == "401":
                expected.add("WWW-Authenticate")
            if status in ("429", "503"):
                expected.add("Retry-After")
            conditional_write = "412" in op["responses"]
            if status == "304" or (conditional_write and status.startswith("2")):
                expected.add("ETag")
            if not expected <= header_names(response):
                missing.append((method, path, status, expected - header_names(response)))
    assert missing == []


def test_every_declared_header_reference_resolves(document):
    headers = document["components"]["headers"]
    for _, _, op in operations(document):
        for response in op["responses"].values():
            for ref in response.get("headers", {}).values():
                assert ref["$ref"].rsplit("/", 1)[1] in headers


def test_every_request_body_has_an_example_its_struct_accepts(document):
    structs = {op.body.__name__: op.body
               for route in ROUTES for method in responders(route.resource)
               if (op := operation_of(route.resource, method)).body is not None}
    for method, path, op in operations(document):
        if "requestBody" in op:
            media = op["requestBody"]["content"]["application/json"]
            assert "example" in media, (method, path)
            struct = structs[media["schema"]["$ref"].rsplit("/", 1)[1]]
            msgspec.json.decode(msgspec.json.encode(media["example"]), type=struct)


# What the document promises, checked against the server.

def test_conditional_reads_are_the_documented_ones(client, db, document):
    admin = new_user(client, "admin", db)
    product = create_product(client, admin)
    paths = {"/v1/categories": "/v1/categories", "/v1/products": "/v1/products",
             "/v1/products/{product_id}": f"/v1/products/{product['id']}"}
    promised = documented(document, "If-None-Match")
    assert promised == {("GET", path) for path in paths}
    for method, path in promised:
        first = client.simulate_get(paths[path])
        assert first.status_code == 200 and first.headers["ETag"].startswith('"')
        again = client.simulate_get(paths[path], headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304, path
        assert "304" in dict(operations_by_key(document))[(method, path)]["responses"]
    # A read that promises no ETag sends none.
    user = new_user(client)
    assert ("GET", "/v1/users/me") not in promised
    assert "ETag" not in client.simulate_get("/v1/users/me", headers=user["headers"]).headers


def test_if_match_is_honoured_where_documented(client, db, document):
    assert {key for key, op in operations_by_key(document) if "412" in op["responses"]} == {
        ("PATCH", "/v1/products/{product_id}")}
    assert "IfMatch" in document["components"]["parameters"]
    patch = document["paths"]["/v1/products/{product_id}"]["patch"]
    assert {"$ref": "#/components/parameters/IfMatch"} in patch["parameters"]
    admin = new_user(client, "admin", db)
    product = create_product(client, admin)
    stale = client.simulate_patch(f"/v1/products/{product['id']}", json={"name": "New"},
                                  headers={**admin["headers"], "If-Match": '"stale"'})
    assert stale.status_code == 412
    fresh = client.simulate_get(f"/v1/products/{product['id']}").headers["ETag"]
    changed = client.simulate_patch(f"/v1/products/{product['id']}", json={"name": "New"},
                                    headers={**admin["headers"], "If-Match": fresh})
    assert changed.status_code == 200 and changed.headers["ETag"] != fresh


def test_location_is_sent_exactly_where_documented(client, db, document):
    admin = new_user(client, "admin", db)
    user = new_user(client)
    product = create_product(client, admin)
    address = {"line1": "1 A St", "city": "B", "postal_code": "1", "country": "DE"}
    creations = {
        ("POST", "/v1/auth/register"): {
            "json": {"email": unique_email(), "name": "N", "password": PASSWORD}},
        ("POST", "/v1/products"): {
            "json": {"sku": f"L-{uuid.uuid4().hex[:6]}", "name": "P", "price": "1.00"},
            "headers": admin["headers"]},
        ("POST", "/v1/categories"): {
            "json": {"name": "C", "slug": "c-loc"}, "headers": admin["headers"]},
        ("POST", "/v1/orders"): {
            "json": {"items": [{"product_id": product["id"], "quantity": 1}],
                     "shipping_address": address},
            "headers": user["headers"]},
    }
    by_key = dict(operations_by_key(document))
    for (method, path), kwargs in creations.items():
        answer = client.simulate_request(method, path, **kwargs)
        assert answer.status_code == 201, (path, answer.text)
        promised = "Location" in header_names(by_key[(method, path)]["responses"]["201"])
        assert ("Location" in answer.headers) == promised, path
        if promised:
            assert answer.headers["Location"].endswith(answer.json["id"])


def test_every_response_carries_the_request_id(client):
    for path in ("/healthz", "/v1/users/me", "/v1/products", "/openapi.json"):
        assert client.simulate_get(path).headers["X-Request-ID"]
    echoed = client.simulate_get("/healthz", headers={"X-Request-ID": "trace-1"})
    assert echoed.headers["X-Request-ID"] == "trace-1"


def test_date_time_fields_are_sent_as_rfc3339_with_an_offset(client, db, document):
    admin = new_user(client, "admin", db)
    product = create_product(client, admin)
    schema = document["components"]["schemas"]["ProductOut"]["properties"]
    for field in ("created_at", "updated_at"):
        assert schema[field]["format"] == "date-time"
        sent = product[field]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", sent), sent
