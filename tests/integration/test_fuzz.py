"""Hostile requests at every route: never a 500, and every 4xx is the envelope.

Three bounded Hypothesis runs, all built from the routes table:

* bodies: a valid body for each body-taking route with one or two parts
  broken (replaced by hostile text or JSON, wrapped in newlines or NULs,
  removed, joined by unknown keys), sent with a token the route accepts, so
  the breaks reach the services and the database, not just the decoder;
* queries: the declared query parameters (and others) with hostile values,
  and cursors forged from hostile JSON;
* requests: anything at all: any method, hostile path ids, junk bodies and
  hostile Content-Type, Content-Length, If-Match, If-None-Match,
  Idempotency-Key, X-Request-ID and Authorization headers.

The examples are fixed in number and derandomized, and each has a deadline,
so the whole file runs in well under a minute.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from datetime import timedelta
from urllib.parse import quote

import falcon.testing
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.factory import create_app
from app.operations import ADMIN, USER, operation_of, responders
from app.routes import ROUTES
from tests.support.api import PASSWORD, new_user
from tests.support.catalog import create_category, create_product

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
UUID = "00000000-0000-4000-8000-000000000000"
FUZZ = settings(deadline=timedelta(seconds=5), derandomize=True, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture
def world(config, db, cache_flushed):
    """An app with no general rate limit (so fuzzing reaches the handlers) and some data."""
    app = create_app(replace(config, rate_limit_per_minute=0), configure_logging=False)
    client = falcon.testing.TestClient(app)
    admin = new_user(client, "admin", db)
    user = new_user(client)
    category = create_category(client, admin)
    product = create_product(client, admin, category=category["slug"], stock=100_000)
    placed = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
    assert placed.status_code == 201, placed.text
    yield {"client": client, "admin": admin, "user": user, "category": category,
           "product": product, "order": placed.json}
    app.deps.close()


# -- hostile values ---------------------------------------------------------------

AFFIXES = ["\n", "\r\n", "\x00", "\u2028", "\u2029", "\x85", " ", "\t", "%00", "'", '"',
           "\\", "\ufeff"]
SPECIAL_TEXT = [
    "", " ", "\x00", "a\x00b", "\n", "US\n", "\r\n", "\u2028", "١٢.٥٠", "1e999", "NaN",
    "sNaN", "Infinity", "-1", "0", "9" * 40, "x" * 600, "' OR 1=1 --", "%00", "../..",
    "\u202e", "\ud7ff", "\U0001f600", UUID, UUID.upper(), UUID + "\n", "null", "true",
    "[]", "{}", "2020-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59", "2020-01-01T00:00:00", "12.50", "USD", "tools",
    "a@b.co\n", "admin", "user\n",
]
text = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    st.text(max_size=30),
    st.builds(lambda a, s, b: a + s + b, st.sampled_from(AFFIXES), st.sampled_from(SPECIAL_TEXT),
              st.sampled_from(AFFIXES)),
)
scalars = st.one_of(
    st.none(), st.booleans(), text,
    st.sampled_from([0, -1, 1, 100, 101, 2**31, 2**63, -2**63, 10**20, 1.5, -0.0, 1e308]),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=8,
)
# Cursors are base64url JSON: forge them from hostile values, mostly in the
# [sort value, id] shape the service issues, so they get past the shape check.
SORT_VALUES = ["2020-01-01T00:00:00Z", "2020-01-01T00:00:00+23:59", "0001-01-01T00:00:00+23:59",
               "9999-12-31T23:59:59-23:59", "2020-01-01T00:00:00", "12.50", "NaN", "sNaN",
               "-Infinity", "1e999999", "1e-999999", "hammer", "a\x00b", 1e308, -1, 10**30]


def _encode_cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).rstrip(b"=").decode()


forged_cursors = st.tuples(
    st.one_of(st.sampled_from(SORT_VALUES), scalars),
    st.one_of(st.sampled_from([UUID, UUID + "\n", UUID.upper(), "\n" + UUID]), text),
).map(lambda pair: _encode_cursor(list(pair)))
cursors = st.one_of(forged_cursors, st.lists(scalars, max_size=3).map(_encode_cursor), text)
# What an HTTP request can carry in a header value: latin-1, no controls but HTAB.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                             blacklist_characters="\x7f"), max_size=300)


# -- the routes -------------------------------------------------------------------

def valid_bodies(w) -> dict[tuple[str, str], dict]:
    """A body each body-taking responder accepts: the seed that gets broken."""
    return {
        ("POST", "/v1/auth/register"): {"email": "fuzz@example.test", "password": "long enough",
                                        "name": "Fuzz"},
        ("POST", "/v1/auth/login"): {"email": w["user"]["email"], "password": PASSWORD},
        ("POST", "/v1/auth/refresh"): {"refresh_token": w["user"]["refresh_token"]},
        ("POST", "/v1/auth/logout"): {"refresh_token": "not-a-token"},
        ("PATCH", "/v1/users/me"): {"current_password": PASSWORD, "name": "N"},
        ("PATCH", "/v1/users/{user_id}"): {"name": "Renamed", "role": "user"},
        ("POST", "/v1/categories"): {"name": "Saws", "slug": "saws"},
        ("POST", "/v1/products"): {"sku": "FZ-1", "name": "Saw", "description": "d",
                                   "price": "9.99", "currency": "USD",
                                   "category": w["category"]["slug"], "stock": 3},
        ("PATCH", "/v1/products/{product_id}"): {"name": "Saw 2", "price": "1.00",
                                                 "stock": 5, "category": None},
        ("POST", "/v1/orders"): {"items": [{"product_id": w["product"]["id"], "quantity": 1}],
                                 "shipping_address": dict(ADDRESS)},
        # Account lifecycle: well-formed, but tokens, codes and passwords that
        # do not match, so no seed deletes or changes the fuzzer's own account.
        ("POST", "/v1/auth/email/verify"): {"token": "A" * 43},
        ("POST", "/v1/auth/password/reset-request"): {"email": "nobody@example.test"},
        ("POST", "/v1/auth/password/reset"): {"token": "A" * 43,
                                              "new_password": "a brand new passphrase"},
        ("POST", "/v1/auth/login/mfa"): {"mfa_token": "A" * 43, "code": "123456"},
        ("DELETE", "/v1/users/me"): {"current_password": "not the password"},
        ("POST", "/v1/users/me/mfa/totp"): {"current_password": "not the password"},
        ("POST", "/v1/users/me/mfa/totp/confirm"): {"code": "123456"},
        ("DELETE", "/v1/users/me/mfa/totp"): {"current_password": "not the password",
                                              "code": "123456"},
        # A public address literal: registration checks it without DNS.
        ("POST", "/v1/webhooks"): {"url": "https://1.1.1.1/hooks", "events": ["order.placed"],
                                   "description": "fuzz"},
        ("PATCH", "/v1/webhooks/{webhook_id}"): {"events": ["product.updated"], "enabled": False},
    }


OPERATIONS = [(method, route.template, operation_of(route.resource, method))
              for route in ROUTES for method in responders(route.resource)]
BODY_OPERATIONS = [(m, t, op) for m, t, op in OPERATIONS if op.body is not None]
QUERY_OPERATIONS = [(m, t, op) for m, t, op in OPERATIONS if op.query is not None]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def own_path(template: str, w) -> str:
    return (template.replace("{user_id}", w["user"]["id"])
            .replace("{product_id}", w["product"]["id"])
            .replace("{order_id}", w["order"]["id"])
            .replace("{webhook_id}", UUID).replace("{delivery_id}", UUID))


def fitting_headers(op, w, ip) -> dict[str, str]:
    """A token the operation accepts, JSON, and an address of its own (per-IP limits)."""
    headers = {"Content-Type": "application/json", "X-Real-IP": ip}
    if op.access == ADMIN:
        headers.update(w["admin"]["headers"])
    elif op.access == USER:
        headers.update(w["user"]["headers"])
    return headers


def _locations(value, prefix=()):
    """Every location inside a JSON value, as key/index tuples (the root excluded)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + (k,)
            yield from _locations(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield prefix + (i,)
            yield from _locations(v, prefix + (i,))


def _at(body, location):
    """``body`` (a copy) and the container that holds ``location``."""
    body = copy.deepcopy(body)
    parent = body
    for step in location[:-1]:
        parent = parent[step]
    return body, parent


@st.composite
def broken_at(draw, body, location):
    """``body`` with ``location`` replaced, affixed, removed or joined by a stranger."""
    body, parent = _at(body, location)
    last = location[-1]
    action = draw(st.sampled_from(["text", "suffix", "prefix", "json", "remove", "extra"]))
    if action == "suffix" and isinstance(parent[last], str):
        parent[last] += draw(st.sampled_from(AFFIXES))  # "US\n": what $ let through
    elif action == "prefix" and isinstance(parent[last], str):
        parent[last] = draw(st.sampled_from(AFFIXES)) + parent[last]
    elif action == "remove" and isinstance(parent, dict):
        del parent[last]
    elif action == "extra" and isinstance(parent, dict):
        parent[draw(text)] = draw(json_values)
    elif action == "json":
        parent[last] = draw(json_values)
    else:
        parent[last] = draw(text)
    return body


def check_answer(method, result, described):
    event(f"status {result.status_code}")  # --hypothesis-show-statistics shows the mix
    assert result.status_code < 500, f"{described}\n-> {result.status_code} {result.text[:500]}"
    if result.status_code < 400 or method == "HEAD":
        return
    assert result.headers.get("content-type", "").startswith("application/json"), described
    body = result.json
    assert set(body) == {"error", "request_id", "trace_id"}, described
    error = body["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), described
    assert set(error) <= {"code", "message", "details"}, described
    assert body["request_id"] == result.headers["x-request-id"], described


def send(w, method, path, *, query=None, headers=None, body=None):
    described = f"{method} {path}?{query or ''} headers={headers!r} body={body!r:.400}"
    result = w["client"].simulate_request(method, path, query_string=query or None,
                                          headers=headers, body=body)
    check_answer(method, result, described)


# -- the runs ---------------------------------------------------------------------

# Hypothesis favours the first of several choices, so where to break a seed is
# not drawn: each example sends the seed once per location, broken there.
BODY_OPERATION_PARAMS = [pytest.param(m, t, op, id=f"{m} {t}") for m, t, op in BODY_OPERATIONS]


@settings(FUZZ, max_examples=30)
@given(data=st.data())
@pytest.mark.parametrize(("method", "template", "op"), BODY_OPERATION_PARAMS)
def test_broken_bodies_never_get_a_500(world, method, template, op, data):
    seed = valid_bodies(world)[(method, template)]
    for location in _locations(seed):
        body = data.draw(broken_at(seed, location))
        ip = data.draw(st.ip_addresses()).exploded
        encoded = json.dumps(body, ensure_ascii=data.draw(st.booleans())).encode()
        send(world, method, own_path(template, world), headers=fitting_headers(op, world, ip),
             body=encoded)


QUERY_OPERATION_PARAMS = [pytest.param(m, t, op, id=f"{m} {t}") for m, t, op in QUERY_OPERATIONS]


@settings(FUZZ, max_examples=25)
@given(data=st.data())
@pytest.mark.parametrize(("method", "template", "op"), QUERY_OPERATION_PARAMS)
def test_hostile_query_strings_never_get_a_500(world, method, template, op, data):
    valid = {"limit": "2", "sort": "-price", "category": world["category"]["slug"],
             "q": "hammer", "min_price": "1.00", "max_price": "99.00", "in_stock": "true",
             "user_id": world["user"]["id"]}
    for name in op.query.__struct_fields__:
        # One request per parameter: that one hostile (a cursor forged from hostile
        # JSON), the others left out or valid, so the hostile one is what is checked.
        pairs = [(name, data.draw(forged_cursors if name == "cursor" else text))]
        for other in op.query.__struct_fields__:
            if other != name and other in valid and data.draw(st.booleans()):
                pairs.append((other, valid[other]))
        if name == "cursor" and "sort" in op.query.__struct_fields__:
            pairs.append(("sort", data.draw(st.sampled_from(
                ["name", "-name", "price", "-price", "created_at", "-created_at"]))))
        query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)
        ip = data.draw(st.ip_addresses()).exploded
        send(world, method, own_path(template, world), query=query,
             headers=fitting_headers(op, world, ip))


RAW_BODIES = [b"", b"{", b"[]", b"null", b"\"x\"", b'{"a":NaN}', b"\xff\xfe", b"{}" * 100,
              b"[" * 3000 + b"]" * 3000, b'{"items": ' + b"[" * 3000 + b"]" * 3000 + b"}",
              b'{"email": "\\ud800"}', b'{"a": 1e999999}', b"\x00", b"  "]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                 "application/json; charset=latin-1", "text/plain", "", "application/json;",
                 "application/json; charset", "multipart/form-data; boundary=x",
                 "application/json; charset=\"utf-8\"; q=1"]
HEADER_SAMPLES = {
    "If-Match": ["*", '"x"', 'W/"x"', ",,", '"' * 3],
    "If-None-Match": ["*", '"x"', ", ,", "W/*"],
    "Idempotency-Key": ["k", "x" * 255, "x" * 256, " "],
    "X-Request-ID": ["ok-1", "x" * 129, "a b", "\u00e9"],
    "Content-Type": CONTENT_TYPES,
}


@settings(FUZZ, max_examples=500)
@given(data=st.data())
def test_hostile_requests_never_get_a_500_or_a_bare_error(world, data):
    draw = data.draw
    method, template, op = draw(st.sampled_from(OPERATIONS))
    if draw(st.integers(0, 4)) == 0:
        method = draw(st.sampled_from(METHODS))  # maybe not allowed here

    path = template
    for name, own in (("user_id", world["user"]["id"]), ("product_id", world["product"]["id"]),
                      ("order_id", world["order"]["id"])):
        if "{" + name + "}" in path:
            value = draw(st.one_of(st.sampled_from([own, own.upper(), UUID, own + "\n"]), text))
            path = path.replace("{" + name + "}", quote(value, safe="") or "%20")
    query = draw(st.one_of(st.just(""), st.text(max_size=40).map(lambda q: q.lstrip("?")),
                           st.builds(lambda v: "cursor=" + quote(v, safe=""), cursors)))

    headers = {"X-Real-IP": draw(st.ip_addresses()).exploded}
    auth = draw(st.sampled_from(["admin", "user", "none", "junk"]))
    if auth in ("admin", "user"):
        headers.update(world[auth]["headers"])
    elif auth == "junk":
        token = world["user"]["access_token"]
        headers["Authorization"] = draw(st.one_of(
            st.sampled_from(["Bearer", "Bearer ", "Bearer a.b.c", "Basic YTpi", "bearer  x",
                             f"Bearer {token}x", f"Bearer {token[:-3]}", f"Bearer {token} x"]),
            header_text.map(lambda t: "Bearer " + t), header_text))
    for name, samples in HEADER_SAMPLES.items():
        if draw(st.booleans()):
            headers[name] = draw(st.one_of(st.sampled_from(samples), header_text))
    if draw(st.integers(0, 5)) == 0:
        # Digits only: the server's parser refuses anything else before the app
        # (and falcon's test client asserts it).
        headers["Content-Length"] = str(draw(st.one_of(
            st.sampled_from([0, 1, 65536, 65537, 2**63 - 1]), st.integers(0, 2**70))))

    seed = valid_bodies(world).get((method, template))
    kind = draw(st.sampled_from(["broken", "json", "raw", "none"] if seed else
                                ["json", "raw", "none"]))
    if kind == "broken":
        location = draw(st.sampled_from(list(_locations(seed))))
        body = json.dumps(draw(broken_at(seed, location))).encode()
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "raw":
        body = draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64)))
    else:
        body = None
    send(world, method, path, query=query, headers=headers, body=body)


LINK_TOKEN_ROUTES = {("POST", "/v1/auth/email/verify"), ("POST", "/v1/auth/password/reset")}


def test_the_seeds_are_valid(world):
    """The fuzzer's seeds pass validation, so their breaks are what gets tested."""
    for method, template, op in BODY_OPERATIONS:
        body = valid_bodies(world)[(method, template)]
        result = world["client"].simulate_request(
            method, own_path(template, world), json=body,
            headers=fitting_headers(op, world, "198.51.100.7"))
        if (method, template) in LINK_TOKEN_ROUTES and result.status_code == 400:
            # The contract's answer to a well-formed token that is not (or no
            # longer) valid: the body got past validation.
            assert "invalid, used or expired" in result.json["error"]["message"], result.text
            continue
        assert result.status_code not in (400, 415, 422), (method, template, result.text)
