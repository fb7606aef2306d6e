"""The OpenAPI 3.1 document, generated from the routes table and its Structs.

The same msgspec types that decode requests and encode responses produce the
schemas here, so the document cannot disagree with the service. What a
Struct cannot say (headers, conditional requests, the error each status
means) is derived from the @operation declarations, with the few
route-specific facts in the tables below; tests/integration/test_openapi_spec.py
checks those facts against a live server.
"""

from __future__ import annotations

import re

import msgspec
import msgspec.inspect

from app import __version__
from app.errors import ErrorEnvelope
from app.operations import ADMIN, PUBLIC, operation_of, responders
from app.webhooks import payloads

_REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{(\w+)}")
_ERROR_TEXT = {
    400: "Malformed request", 401: "Missing, invalid or expired access token "
    "(WWW-Authenticate says which)", 403: "Not allowed for this role", 404: "Not found",
    405: "Method not allowed", 409: "Conflict with the current state",
    412: "If-Match names none of the current ETags", 413: "Body over 64 KiB",
    415: "Body is not application/json", 422: "Validation failed (details name the fields)",
    414: "Request line too long", 429: "Rate limited (see Retry-After and RateLimit-*)",
    431: "Request headers too large", 500: "Internal error",
    503: "A dependency is unavailable (see Retry-After)",
}
# Public operations whose 401 is about the credentials in the body, not a token.
_CREDENTIALS_401 = {
    ("POST", "/v1/auth/login"): "Wrong email or password",
    ("POST", "/v1/auth/refresh"): "Refresh token invalid, expired, reused or revoked",
    ("POST", "/v1/auth/logout"): "Refresh token invalid, expired, reused or revoked",
}
# What a status means on one operation, where the general text would mislead.
_ERROR_BY_OPERATION = {
    ("PATCH", "/v1/users/me", 403): "current_password is incorrect",
    ("PATCH", "/v1/users/{user_id}", 403): "Not an admin, or an admin changing its own role",
    ("PATCH", "/v1/users/{user_id}", 409): "The last admin cannot be demoted",
    ("POST", "/v1/auth/register", 409): "An account with this email already exists",
    ("POST", "/v1/categories", 409): "A category with this slug exists",
    ("POST", "/v1/products", 409): "A product with this sku exists",
    ("PATCH", "/v1/products/{product_id}", 409): "A product with this sku exists",
    ("GET", "/v1/orders", 404): "user_id names no user",
    ("POST", "/v1/orders", 409): "Not enough stock (code out_of_stock), or a request with "
    "this Idempotency-Key is still in progress (retry)",
    ("POST", "/v1/orders/{order_id}/cancel", 409): "Only placed orders can be cancelled",
}
# What the HTTP server answers for any request before it reaches a route:
# broken framing (400), an over-long request line (414) or header (431).
_SERVER_ERRORS = {400, 414, 431}
# Routes that touch no dependency, so never answer 503.
_NO_DEPENDENCY = {"/healthz", "/openapi.json", "/docs"}
# Reads answered from a cached representation with a strong ETag: they
# honour If-None-Match with 304.
_CONDITIONAL_READS = {
    ("GET", "/v1/categories"), ("GET", "/v1/products"), ("GET", "/v1/products/{product_id}"),
}
# Creations that answer Location: the URL of what they created.
_LOCATION = {
    ("POST", "/v1/auth/register"): "/v1/users/{id}",
    ("POST", "/v1/products"): "/v1/products/{id}",
    ("POST", "/v1/orders"): "/v1/orders/{id}",
    ("POST", "/v1/webhooks"): "/v1/webhooks/{id}",
}
# Operations that accept Idempotency-Key (a retry replays the first answer).
_IDEMPOTENT = {("POST", "/v1/orders")}

_HEADERS = {
    "X-Request-ID": {
        "description": "The request's id, in the logs too: the one the client sent "
        "if it was valid, else a new one.",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "A strong tag of this representation; send it back in "
        "If-None-Match (reads) or If-Match (changes).",
        "schema": {"type": "string"}, "example": '"5d41402abc4b2a76b9719d911017c592"',
    },
    "Location": {"description": "The URL of the created resource.",
                 "schema": {"type": "string", "format": "uri-reference"}},
    "Retry-After": {"description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 1}},
    # draft-ietf-httpapi-ratelimit-headers, its widely deployed form (app/ratelimit.py).
    "RateLimit-Limit": {"description": "Requests allowed per window by the limit "
                        "this answer was counted against.",
                        "schema": {"type": "integer", "minimum": 1}},
    "RateLimit-Remaining": {"description": "Requests left in the current window.",
                            "schema": {"type": "integer", "minimum": 0}},
    "RateLimit-Reset": {"description": "Seconds until the current window ends and "
                        "the count starts again.", "schema": {"type": "integer", "minimum": 1}},
    "WWW-Authenticate": {
        "description": 'An RFC 6750 challenge, e.g. Bearer error="invalid_token", '
        'error_description="the access token has expired".',
        "schema": {"type": "string"},
    },
}
_RATELIMIT_HEADERS = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
_PARAMETERS = {
    "X-Request-ID": {
        "name": "X-Request-ID", "in": "header", "required": False,
        # No pattern: the server never refuses an id, it replaces one it does not take.
        "description": "An id to trace this request by, echoed in the response: 1 to "
        "128 of A-Z a-z 0-9 . _ - (anything else is replaced by a new id).",
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Any unique string (1 to 255 characters, e.g. a UUID). A retry "
        "with the same key and body replays the first answer instead of placing "
        "another order; the same key with another body is a 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "If-None-Match": {
        "name": "If-None-Match", "in": "header", "required": False,
        "description": "ETags the client holds (or *): 304 with no body if one is current.",
        "schema": {"type": "string"},
    },
    "If-Match": {
        "name": "If-Match", "in": "header", "required": False,
        "description": "ETags the change is meant for (or *): 412 if none is current, "
        "so a concurrent change is not overwritten.",
        "schema": {"type": "string"},
    },
}
_SUCCESS_TEXT = {200: "OK", 201: "Created", 204: "No content"}
_TAG_TEXT = {
    "auth": "Accounts and tokens", "users": "The caller's account; user administration",
    "catalog": "Categories and products", "orders": "Placing, reading and cancelling orders",
    "webhooks": "Event subscriptions and their deliveries (admins)",
    "operations": "Probes and this reference",
}
# An example of each request body, by Struct name: what try-it-out starts
# from. tests/integration/test_openapi_spec.py decodes each with its Struct.
_BODY_EXAMPLES = {
    "VerifyEmailIn": {"token": "the token of the link in the verification mail"},
    "ResetRequestIn": {"email": "ada@example.com"},
    "ResetPasswordIn": {"token": "the token of the link in the reset mail",
                        "new_password": "a brand new passphrase"},
    "TotpEnrolIn": {"current_password": "correct horse battery"},
    "TotpConfirmIn": {"code": "492039"},
    "TotpDisableIn": {"current_password": "correct horse battery", "code": "492039"},
    "MfaLoginIn": {"mfa_token": "the mfa_token of the 401 mfa_required answer", "code": "492039"},
    "DeleteMeIn": {"current_password": "correct horse battery"},
    "RegisterIn": {"email": "ada@example.com", "password": "correct horse battery",
                   "name": "Ada Lovelace"},
    "LoginIn": {"email": "ada@example.com", "password": "correct horse battery"},
    "RefreshIn": {"refresh_token": "the refresh_token of the last login or refresh"},
    "UpdateMeIn": {"current_password": "correct horse battery", "name": "Ada King"},
    "UpdateUserIn": {"role": "admin"},
    "CategoryIn": {"name": "Hand tools", "slug": "hand-tools"},
    "ProductIn": {"sku": "HAM-001", "name": "Claw hammer", "description": "16 oz, steel",
                  "price": "24.90", "currency": "EUR", "category": "hand-tools",
                  "stock": 12},
    "ProductPatch": {"price": "22.50", "stock": 30},
    "WebhookIn": {"url": "https://hooks.example.com/peregrine", "events": ["order.placed"],
                  "description": "Fulfilment"},
    "WebhookPatch": {"enabled": False},
    "OrderIn": {
        "items": [{"product_id": "0b7f3c9e-5d2a-4f61-9c1e-2a8d6b4e7f10", "quantity": 2}],
        "shipping_address": {"line1": "12 Analytical Row", "city": "London",
                             "postal_code": "N1 9GU", "country": "GB"},
    },
}


def build(routes) -> dict:
    """Return the OpenAPI document for ``routes`` (the routes table) as a dict."""
    types: list[type] = [ErrorEnvelope]
    paths: dict[str, dict] = {}
    for route in routes:
        resource = route.resource  # declarations live on the class
        if not getattr(resource, "in_openapi", True):
            continue  # e.g. the files /docs loads: noise to an API client
        item = {}
        for method in responders(resource):
            op = operation_of(resource, method)
            item[method.lower()] = _operation(route.template, method, op, types)
        paths[route.template] = item

    webhooks = _webhooks(types)
    (_, components) = msgspec.json.schema_components(types, ref_template=_REF)
    _mark_datetimes(components, types)
    return _ecma_patterns(_uuid_ids({
        "openapi": "3.1.0",
        "info": {
            "title": "Peregrine API",
            "version": __version__,
            "description": "Users, auth, product catalog and orders. Every error "
            "uses the ErrorEnvelope schema; every response carries X-Request-ID. "
            "Authorize with the access_token of POST /v1/auth/login.",
        },
        "tags": [{"name": tag, **({"description": _TAG_TEXT[tag]} if tag in _TAG_TEXT else {})}
                 for tag in dict.fromkeys(op["tags"][0] for item in paths.values()
                                          for op in item.values())],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": components,
            "headers": _HEADERS,
            "parameters": {_param_key(name): value for name, value in _PARAMETERS.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "The access_token of POST /v1/auth/login "
                           "or /v1/auth/refresh."}
            },
        },
    }))


# The Standard Webhooks headers of every delivery attempt (app/webhooks/signing.py).
_WEBHOOK_HEADERS = [
    ("webhook-id", "The event id: the same on every attempt of this event, so "
     "receivers deduplicate on it (delivery is at least once).",
     {"type": "string", "format": "uuid"}),
    ("webhook-timestamp", "Seconds since the Unix epoch when this attempt was signed; "
     "reject attempts too far from your clock to stop replays.",
     {"type": "string", "pattern": "^[0-9]+$"}),
    ("webhook-signature", "Space-separated v1,<base64 HMAC-SHA256> signatures of "
     "\"{webhook-id}.{webhook-timestamp}.{body}\", keyed with the base64 part of the "
     "whsec_ secret: one per secret in use (two for 24 h after a rotation).",
     {"type": "string", "pattern": "^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$"}),
]
_WEBHOOK_TEXT = (
    "Sent by POST to the URL of every enabled subscription to this event type, "
    "after the change committed, at least once and in no particular order. An "
    "answer other than 2xx (or none within 15 s) is retried with exponential "
    "backoff and jitter for at least 24 hours, after Retry-After when the "
    "endpoint sends it; redirects are not followed.")


def _webhooks(types: list[type]) -> dict:
    """The ``webhooks`` object: one POST per event type the subscriptions can name."""
    out = {}
    for event_type, (meaning, bodies) in payloads.EVENTS.items():
        refs = [_ref(body, types) for body in bodies]
        schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
        out[event_type] = {"post": {
            "summary": event_type,
            "description": f"{meaning} {_WEBHOOK_TEXT}",
            "operationId": "webhook_" + event_type.replace(".", "_"),
            "tags": ["webhooks"],
            "parameters": [{"name": name, "in": "header", "required": True,
                            "description": text, "schema": schema_}
                           for name, text, schema_ in _WEBHOOK_HEADERS],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}},
            "responses": {
                "2XX": {"description": "Delivered: no further attempt of this event."},
                "410": {"description": "Gone: this delivery is dead and the subscription "
                        "is disabled until an admin enables it again."},
                "default": {"description": "Not delivered: retried later (honouring "
                            "Retry-After), until the retry period runs out."},
            },
        }}
    return out


def _param_key(header: str) -> str:
    return header.replace("-", "")


def _param_ref(header: str) -> dict:
    return {"$ref": f"#/components/parameters/{_param_key(header)}"}


def _header_refs(*names: str) -> dict:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


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


def _is_id(name: str) -> bool:
    # request_id and trace_id name a request (hex, app/middleware.py and
    # app/tracing.py), not a row.
    return name == "id" or (name.endswith("_id") and name not in _REQUEST_IDS)


_REQUEST_IDS = ("request_id", "trace_id")


def _uuid_ids(node):
    """Mark every ``id`` / ``*_id`` string property ``format: uuid``.

    Every id Peregrine hands out or accepts is a UUID (app/ids.py), but the
    Structs type them ``str`` so that ids in any case decode; the format lets
    client generators type them as UUIDs.
    """
    if isinstance(node, dict):
        out = {key: _uuid_ids(value) for key, value in node.items()}
        properties = out.get("properties")
        if isinstance(properties, dict):
            out["properties"] = {
                name: (_with_uuid_format(schema) if _is_id(name) else schema)
                for name, schema in properties.items()
            }
        return out
    if isinstance(node, list):
        return [_uuid_ids(item) for item in node]
    return node


def _with_uuid_format(schema: dict) -> dict:
    return _with_format(schema, "uuid")


def _mark_datetimes(components: dict, types: list[type]) -> None:
    """Give every ``datetime`` property ``format: date-time``, in place.

    msgspec writes a ``datetime`` as a bare string (it adds the format only
    for ``Meta(tz=True)``, a decoding rule); Peregrine's are timestamptz
    values, answered as RFC 3339 (the contract), and the format lets client
    generators type them.
    """
    todo, seen = list(msgspec.inspect.multi_type_info(types)), set()
    while todo:
        node = todo.pop()
        if isinstance(node, msgspec.inspect.StructType):
            if node.cls in seen:
                continue
            seen.add(node.cls)
            properties = components.get(node.cls.__name__, {}).get("properties", {})
            for field in node.fields:
                if field.encode_name in properties and _is_datetime(field.type):
                    properties[field.encode_name] = _with_format(
                        properties[field.encode_name], "date-time")
                todo.append(field.type)
        elif isinstance(node, msgspec.inspect.UnionType):
            todo += node.types
        elif isinstance(node, (msgspec.inspect.ListType, msgspec.inspect.SetType,
                               msgspec.inspect.FrozenSetType, msgspec.inspect.VarTupleType)):
            todo.append(node.item_type)
        elif isinstance(node, msgspec.inspect.DictType):
            todo.append(node.value_type)


def _is_datetime(node) -> bool:
    if isinstance(node, msgspec.inspect.UnionType):
        return any(isinstance(t, msgspec.inspect.DateTimeType) for t in node.types)
    return isinstance(node, msgspec.inspect.DateTimeType)


def _with_format(schema: dict, fmt: str) -> dict:
    """``schema`` (a string, or a union holding one) with ``format: fmt`` on its string."""
    if schema.get("type") == "string":
        return {**schema, "format": fmt}
    if "anyOf" in schema:
        return {**schema, "anyOf": [_with_format(s, fmt) for s in schema["anyOf"]]}
    return schema


def _without_null(schema: dict) -> dict:
    """A query parameter's schema without its ``null`` branch.

    ``X | None = None`` in a query Struct means "may be left out"; a query
    string has no null to send, and generators would offer one.
    """
    branches = schema.get("anyOf")
    if branches is None:
        return schema
    kept = [branch for branch in branches if branch != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _ref(schema: type, types: list[type]) -> dict:
    if schema not in types:
        types.append(schema)
    return {"$ref": _REF.format(name=schema.__name__)}


def _path_parameter(name: str) -> dict:
    thing = name.removesuffix("_id").replace("_", " ")
    schema = {"type": "string", "format": "uuid"} if _is_id(name) else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": f"The {thing}'s id (a UUID; any case)" if _is_id(name) else name}


def _query_parameters(query: type) -> list[dict]:
    parameters = []
    for field in msgspec.structs.fields(query):
        schema = _without_null(msgspec.json.schema(field.type))
        if isinstance(field.default, (str, int, float)):  # not NODEFAULT, None or UNSET
            schema = {**schema, "default": field.default}
        if _is_id(field.encode_name):
            schema = _with_uuid_format(schema)
        parameter = {"name": field.encode_name, "in": "query", "required": field.required,
                     "schema": schema}
        if "description" in schema:
            parameter["description"] = schema["description"]
        parameters.append(parameter)
    return parameters


def _operation(template: str, method: str, op, types: list[type]) -> dict:
    key = (method, template)
    out: dict = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": f"{method.lower()}_{template.strip('/').replace('/', '_')}"
        .replace("{", "").replace("}", "").replace(".", "_") or "root",
    }
    parameters = [_path_parameter(name) for name in _PATH_PARAM.findall(template)]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    conditional_read = key in _CONDITIONAL_READS
    conditional_write = 412 in op.errors  # a 412 is only ever If-Match failing
    if conditional_read:
        parameters.append(_param_ref("If-None-Match"))
    if conditional_write:
        parameters.append(_param_ref("If-Match"))
        out["description"] = ("Send If-Match with the ETag of your last read: 412 if "
                              "the product changed since, so a concurrent change is "
                              "not overwritten.")
    if key in _IDEMPOTENT:
        parameters.append(_param_ref("Idempotency-Key"))
    parameters.append(_param_ref("X-Request-ID"))
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
        body: dict[str, object] = {"schema": _ref(op.body, types)}
        if op.body.__name__ in _BODY_EXAMPLES:
            body["example"] = _BODY_EXAMPLES[op.body.__name__]
        out["requestBody"] = {"required": True, "content": {"application/json": body}}
        errors |= {400, 413, 415, 422}
    if op.query is not None:
        errors.add(422)

    success_headers = ["X-Request-ID"]
    if conditional_read or conditional_write:
        success_headers.append("ETag")
    if key in _LOCATION:
        success_headers.append("Location")
    if op.rate_limited:
        success_headers += _RATELIMIT_HEADERS
    success: dict = {"description": _SUCCESS_TEXT.get(op.status, "Success"),
                     "headers": _header_refs(*success_headers)}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": _ref(op.response, types)}}
    responses = {str(op.status): success}
    if conditional_read:
        responses["304"] = {"description": "Not modified: an If-None-Match tag is current",
                            "headers": _header_refs("X-Request-ID", "ETag")}
    for status in sorted(errors):
        headers = ["X-Request-ID"]
        if status == 401:
            headers.append("WWW-Authenticate")
        if status in (429, 503):
            headers.append("Retry-After")
        if status == 429:
            headers += _RATELIMIT_HEADERS
        description = _ERROR_BY_OPERATION.get((method, template, status)) or _ERROR_TEXT.get(
            status, "Error")
        if status == 401 and key in _CREDENTIALS_401:
            description = _CREDENTIALS_401[key]
        elif status == 404 and (method, template, 404) not in _ERROR_BY_OPERATION and (
                names := _PATH_PARAM.findall(template)):
            things = [name.removesuffix("_id").replace("_", " ") for name in names]
            description = "No such " + " or ".join(things)
        responses[str(status)] = {
            "description": description,
            "headers": _header_refs(*headers),
            "content": {"application/json": {"schema": _ref(ErrorEnvelope, types)}},
        }
    out["responses"] = responses
    return out
