"""The OpenAPI document is built from the routes table and agrees with its declarations."""

from __future__ import annotations

import re

import msgspec
import pytest

from app import openapi
from app.errors import ErrorEnvelope
from app.operations import ADMIN, PUBLIC, operation_of, responders
from app.routes import ROUTES

REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def document():
    return openapi.build(ROUTES)


def documented_routes():
    return [route for route in ROUTES if getattr(route.resource, "in_openapi", True)]


def operations():
    for route in documented_routes():
        for method in responders(route.resource):
            yield route.template, method, operation_of(route.resource, method)


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_the_document_is_openapi_3_1_and_serialisable(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert msgspec.json.decode(msgspec.json.encode(document)) == document


def test_every_documented_route_has_exactly_its_responders(document):
    assert set(document["paths"]) == {route.template for route in documented_routes()}
    for route in documented_routes():
        methods = {method.lower() for method in responders(route.resource)}
        assert set(document["paths"][route.template]) == methods, route.template


def resolve(document, node: dict) -> dict:
    """``node``, or what its local ``$ref`` (``#/components/<kind>/<name>``) points at."""
    ref = node.get("$ref")
    if ref is None:
        return node
    assert ref.startswith("#/components/"), ref
    _, _, kind, name = ref.split("/")
    return document["components"][kind][name]


def test_every_reference_resolves(document):
    found = list(refs(document))
    assert any(ref.startswith(REF) for ref in found)
    for ref in found:
        assert resolve(document, {"$ref": ref}), ref


def test_operation_ids_are_unique(document):
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("template", "method", "op"), list(operations()),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_each_operation_documents_what_its_declaration_says(document, template, method, op):
    doc = document["paths"][template][method.lower()]
    responses = doc["responses"]
    assert str(op.status) in responses
    success = resolve(document, responses[str(op.status)])
    if op.response is not None:
        schema = success["content"]["application/json"]["schema"]
        assert schema == {"$ref": REF + op.response.__name__}
    parameters = [resolve(document, p) for p in doc.get("parameters", ())]
    path_params = {p["name"] for p in parameters if p["in"] == "path"}
    assert path_params == set(re.findall(r"{(\w+)}", template))
    if op.body is not None:
        body = doc["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": REF + op.body.__name__}
        assert {"400", "413", "415", "422"} <= set(responses)
    else:
        assert "requestBody" not in doc
    if op.query is not None:
        query = {p["name"] for p in parameters if p["in"] == "query"}
        assert query == {f.encode_name for f in msgspec.structs.fields(op.query)}
        assert "422" in responses
    if op.access == PUBLIC:
        assert "security" not in doc
    else:
        assert doc["security"] == [{"bearer": []}]
        assert "401" in responses
        if op.access == ADMIN:
            assert "403" in responses
    if op.rate_limited:
        assert "429" in responses
    for status in op.errors:
        assert str(status) in responses
    for status, response in responses.items():
        if int(status) >= 400:
            schema = resolve(document, response)["content"]["application/json"]["schema"]
            assert schema == {"$ref": REF + ErrorEnvelope.__name__}


def test_patterns_are_written_in_json_schemas_regex_dialect(document):
    def patterns(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    yield value
                else:
                    yield from patterns(value)
        elif isinstance(node, list):
            for item in node:
                yield from patterns(item)

    found = list(patterns(document))
    assert found
    for pattern in found:
        assert "\\A" not in pattern and "\\Z" not in pattern, pattern
        re.compile(pattern)


def test_every_timestamp_is_typed_date_time(document):
    schemas = document["components"]["schemas"]
    for name, field in [("ProductOut", "created_at"), ("ProductOut", "updated_at"),
                        ("OrderOut", "created_at"), ("UserOut", "created_at")]:
        assert schemas[name]["properties"][field] == {"type": "string", "format": "date-time"}
    # Every datetime field of every Struct, optional ones included; no other string.
    for name, schema in schemas.items():
        for field, prop in schema.get("properties", {}).items():
            dated = "date-time" in str(prop)
            assert dated == field.endswith("_at"), (name, field, prop)


def test_a_nullable_timestamp_keeps_its_null(document):
    delivery = document["components"]["schemas"].get("DeliveryOut")
    if delivery is None:
        pytest.fail("DeliveryOut is no longer in the document: pick another nullable timestamp")
    assert delivery["properties"]["delivered_at"] == {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
