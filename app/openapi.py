"""The OpenAPI 3.1 document, generated from the routes table and its Structs.

The same msgspec types that decode requests and encode responses produce the
schemas here, so the document cannot disagree with the service.
"""

from __future__ import annotations

import re

import msgspec

from app import __version__
from app.errors import ErrorEnvelope
from app.operations import ADMIN, PUBLIC, operation_of, responders

_REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{(\w+)}")
_ERROR_TEXT = {
    400: "Malformed request", 401: "Missing or invalid access token",
    403: "Not allowed for this role", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 412: "Precondition failed", 413: "Body over 64 KiB",
    415: "Body is not application/json", 422: "Validation failed",
    414: "Request line too long", 429: "Rate limited (see Retry-After)",
    431: "Request headers too large", 500: "Internal error",
    503: "A dependency is unavailable (see Retry-After)",
}
# What the HTTP server answers for any request before it reaches a route:
# broken framing (400), an over-long request line (414) or header (431).
_SERVER_ERRORS = {400, 414, 431}
# Routes that touch no dependency, so never answer 503.
_NO_DEPENDENCY = {"/healthz", "/openapi.json", "/docs"}


def build(routes) -> dict:
    """Return the OpenAPI document for ``routes`` (the routes table) as a dict."""
    types: list[type] = [ErrorEnvelope]
    paths: dict[str, dict] = {}
    for route in routes:
        resource = route.resource  # declarations live on the class
        item = {}
        for method in responders(resource):
            op = operation_of(resource, method)
            item[method.lower()] = _operation(route.template, method, op, types)
        paths[route.template] = item

    (_, components) = msgspec.json.schema_components(types, ref_template=_REF)
    return _ecma_patterns({
        "openapi": "3.1.0",
        "info": {
            "title": "Peregrine API",
            "version": __version__,
            "description": "Users, auth, product catalog and orders. Every error "
            "uses the ErrorEnvelope schema.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    })


def _ecma_patterns(node):
    """Rewrite Python's ``\\A...\\Z`` anchors as ``^...$`` throughout ``node``.

    The schemas anchor with ``\\A``/``\\Z`` because Python's ``$`` matches
    before a final newline (app/schemas/text.py). JSON Schema patterns are
    ECMA-262, which has no ``\\A``/``\\Z`` but whose ``^``/``$`` (without the
    m flag) match only at the ends: the same constraint, in the document's dialect.
    """
    if isinstance(node, dict):
        return {
            key: (f"^{value[2:-2]}$" if key == "pattern" and isinstance(value, str)
                  and value.startswith("\\A") and value.endswith("\\Z")
                  else _ecma_patterns(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_ecma_patterns(item) for item in node]
    return node


def _ref(schema: type, types: list[type]) -> dict:
    if schema not in types:
        types.append(schema)
    return {"$ref": _REF.format(name=schema.__name__)}


def _operation(template: str, method: str, op, types: list[type]) -> dict:
    out: dict = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": f"{method.lower()}_{template.strip('/').replace('/', '_')}"
        .replace("{", "").replace("}", "").replace(".", "_") or "root",
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(template)
    ]
    if op.query is not None:
        for field in msgspec.structs.fields(op.query):
            parameters.append({
                "name": field.encode_name,
                "in": "query",
                "required": field.required,
                "schema": msgspec.json.schema(field.type),
            })
    if parameters:
        out["parameters"] = parameters

    errors = set(op.errors) | _SERVER_ERRORS | {500}
    if template not in _NO_DEPENDENCY:
        errors.add(503)
    if op.access != PUBLIC:
        out["security"] = [{"bearer": []}]
        errors.add(401)
        if op.access == ADMIN:
            errors.add(403)
    if op.rate_limited:
        errors.add(429)
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body, types)}},
        }
        errors |= {400, 413, 415, 422}
    if op.query is not None:
        errors.add(422)

    success: dict = {"description": "Success"}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": _ref(op.response, types)}}
    responses = {str(op.status): success}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": _ref(ErrorEnvelope, types)}},
        }
    out["responses"] = responses
    return out
