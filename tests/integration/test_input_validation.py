"""Schema patterns match whole strings, and no text field lets a NUL through.

Python's ``$`` also matches before a final newline, and msgspec applies
``pattern=`` with ``re.search``: ``^[A-Z]{2}$`` let ``"US\\n"`` into stored
data, registered a second account for an existing email plus ``"\\n"`` and
slipped past the duplicate-line check of orders. Every case here goes through
the HTTP API.
"""

import re

import msgspec
import pytest

from app.operations import operation_of, responders
from app.routes import ROUTES
from tests.support.api import new_user, register, unique_email
from tests.support.catalog import create_category, create_product

# What may sit around a valid value and must make it invalid: newlines in all
# their spellings (Python's $ stops before "\n"), NUL, Unicode separators.
AFFIXES = ["\n", "\r\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\t", " "]
HOSTILE = [v for a in AFFIXES for v in (("suffix", a), ("prefix", a))]
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


def around(value: str, where: str, affix: str) -> str:
    return value + affix if where == "suffix" else affix + value


def assert_422(result, field: str):
    assert result.status_code == 422, result.text
    body = result.json
    assert body["error"]["code"] == "validation_failed"
    assert body["request_id"] == result.headers["x-request-id"]
    assert field in [d["field"] for d in body["error"].get("details", [])], body
    return body


def assert_all_422(send, value: str, field: str):
    """``send(hostile)`` for each affix around ``value``; every answer must be a 422."""
    wrong = []
    for where, affix in HOSTILE:
        result = send(around(value, where, affix))
        details = (result.json or {}).get("error", {}).get("details") or [{}]
        if result.status_code != 422 or details[0].get("field") != field:
            wrong.append((where, affix, result.status_code, result.text[:200]))
    assert not wrong, wrong


# -- the schemas themselves ---------------------------------------------------


def _input_structs():
    """Every Struct a request body or query string is decoded into, nested ones too."""
    seen, todo = {}, []
    for route in ROUTES:
        for method in responders(route.resource):
            op = operation_of(route.resource, method)
            todo += [t for t in (op.body, op.query) if t is not None]
    while todo:
        info = msgspec.inspect.type_info(todo.pop())
        if info.cls in seen:
            continue
        seen[info.cls] = info
        for field in info.fields:
            todo += [leaf.cls for leaf in _leaves(field.type)
                     if isinstance(leaf, msgspec.inspect.StructType)]
    return seen


def _leaves(t):
    if isinstance(t, msgspec.inspect.Metadata):
        yield from _leaves(t.type)
    elif isinstance(t, msgspec.inspect.UnionType):
        for member in t.types:
            yield from _leaves(member)
    elif isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.TupleType)):
        yield from _leaves(getattr(t, "item_type", None) or t.item_types[0])
    else:
        yield t


STR_FIELDS = [
    pytest.param(s, f, id=f"{cls.__name__}.{f.name}")
    for cls, info in _input_structs().items()
    for f in info.fields
    for s in _leaves(f.type) if isinstance(s, msgspec.inspect.StrType)
]


@pytest.mark.parametrize(("str_type", "field"), STR_FIELDS)
def test_every_input_string_is_anchored_and_refuses_nul(str_type, field):
    pattern = str_type.pattern
    assert pattern is not None, f"{field.name}: free text needs at least the NUL_FREE pattern"
    assert pattern.startswith("\\A") and pattern.endswith("\\Z"), (
        f"{field.name}: {pattern!r} must be anchored with \\A...\\Z ($ allows a trailing \\n)")
    assert re.search(pattern, "\x00") is None and re.search(pattern, "a\x00") is None


def test_the_openapi_document_states_patterns_in_ecma_syntax(client):
    document = client.simulate_get("/openapi.json").text
    patterns = re.findall(r'"pattern":"((?:[^"\\]|\\.)*)"', document)
    assert patterns
    for pattern in patterns:
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
        assert "\\\\A" not in pattern and "\\\\Z" not in pattern, pattern


# -- auth ---------------------------------------------------------------------


def test_register_refuses_an_email_with_anything_around_it(client, db):
    assert_all_422(lambda email: client.simulate_post("/v1/auth/register", json={
        "email": email, "password": "long enough", "name": "N"}), unique_email(), "$.email")


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\u2028"])
def test_an_existing_email_plus_a_newline_is_not_a_second_account(client, db, suffix):
    email = unique_email()
    register(client, email)
    result = client.simulate_post("/v1/auth/register", json={
        "email": email + suffix, "password": "long enough", "name": "Twin"})
    assert_422(result, "$.email")
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM users")
        assert cur.fetchone()[0] == 1


# -- catalog ------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("sku", "SKU-1"), ("price", "12.50"), ("currency", "EUR"), ("category", "tools")])
def test_product_fields_refuse_anything_around_them(client, admin, field, value):
    create_category(client, admin, slug="tools")
    product = create_product(client, admin)
    body = {"sku": "SKU-1", "name": "Hammer", "price": "12.50", "currency": "EUR",
            "category": "tools"}
    assert_all_422(lambda hostile: client.simulate_post(
        "/v1/products", json={**body, field: hostile}, headers=admin["headers"]),
        value, f"$.{field}")
    assert_all_422(lambda hostile: client.simulate_patch(
        f"/v1/products/{product['id']}", json={field: hostile}, headers=admin["headers"]),
        value, f"$.{field}")
    unchanged = client.simulate_get(f"/v1/products/{product['id']}").json
    assert unchanged["currency"] == "USD" and unchanged["price"] == "10.00"
    assert client.simulate_get("/v1/products").json["items"] == [unchanged]


def test_category_slug_refuses_anything_around_it(client, admin):
    assert_all_422(lambda slug: client.simulate_post(
        "/v1/categories", headers=admin["headers"], json={"name": "Tools", "slug": slug}),
        "tools", "$.slug")


@pytest.mark.parametrize("price", ["١٢.٥٠", "１２.50", "12.٥"])
def test_money_takes_ascii_digits_only(client, admin, price):
    # In a str pattern \d also matches other scripts' digits; Postgres does not.
    result = client.simulate_post("/v1/products", headers=admin["headers"],
                                  json={"sku": "S", "name": "N", "price": price})
    assert_422(result, "$.price")
    assert_422(client.simulate_get("/v1/products", params={"min_price": price}), "$.min_price")


@pytest.mark.parametrize(("param", "value"), [
    ("category", "tools"), ("min_price", "1.00"), ("max_price", "9.99")])
def test_product_filters_refuse_anything_around_them(client, db, param, value):
    assert_all_422(lambda hostile: client.simulate_get("/v1/products", params={param: hostile}),
                   value, f"$.{param}")


# -- orders -------------------------------------------------------------------


def test_order_country_and_product_id_refuse_anything_around_them(client, admin):
    product = create_product(client, admin)
    user = new_user(client)
    line = {"product_id": product["id"], "quantity": 1}

    def order(items, address):
        return client.simulate_post("/v1/orders", headers=user["headers"],
                                    json={"items": items, "shipping_address": address})

    assert_all_422(lambda country: order([line], {**ADDRESS, "country": country}),
                   "US", "$.shipping_address.country")
    assert_all_422(lambda product_id: order([{**line, "product_id": product_id}], ADDRESS),
                   product["id"], "$.items[0].product_id")
    assert client.simulate_get(f"/v1/products/{product['id']}").json["stock"] == 10


def test_a_product_id_plus_newline_is_not_a_second_line_for_the_same_product(client, admin):
    product = create_product(client, admin, stock=10)
    user = new_user(client)
    result = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1},
                  {"product_id": product["id"] + "\n", "quantity": 1}],
        "shipping_address": ADDRESS})
    assert_422(result, "$.items[1].product_id")
    assert client.simulate_get(f"/v1/products/{product['id']}").json["stock"] == 10


def test_orders_user_filter_refuses_anything_around_the_id(client, admin):
    assert_all_422(lambda user_id: client.simulate_get(
        "/v1/orders", headers=admin["headers"], params={"user_id": user_id}),
        admin["id"], "$.user_id")


# -- NUL, wherever text comes in -----------------------------------------------


def _nul_cases(product_id: str, category_slug: str):
    """(method, path, body or query, field) for every free-text input."""
    order = {"items": [{"product_id": product_id, "quantity": 1}], "shipping_address": ADDRESS}
    product = {"sku": "NUL-1", "name": "N", "price": "1.00"}
    register_body = {"email": "nul@example.test", "password": "long enough", "name": "N"}
    cases = []
    for field in ("line1", "city", "postal_code"):
        cases.append(("POST", "/v1/orders", {**order, "shipping_address": {
            **ADDRESS, field: "a\x00b"}}, f"$.shipping_address.{field}"))
    for field in ("name", "password"):
        cases.append(("POST", "/v1/auth/register", {**register_body, field: "long\x00enough"},
                      f"$.{field}"))
    for field in ("email", "password"):
        cases.append(("POST", "/v1/auth/login", {"email": "a@b.test", "password": "pw",
                                                 field: "a\x00"}, f"$.{field}"))
    for path in ("/v1/auth/refresh", "/v1/auth/logout"):
        cases.append(("POST", path, {"refresh_token": "t\x00"}, "$.refresh_token"))
    for field in ("name", "password", "current_password"):
        cases.append(("PATCH", "/v1/users/me", {"current_password": "long enough",
                                                field: "long\x00enough"}, f"$.{field}"))
    cases.append(("POST", "/v1/categories", {"name": "a\x00", "slug": category_slug + "-2"},
                  "$.name"))
    for field in ("name", "description"):
        cases.append(("POST", "/v1/products", {**product, field: "a\x00"}, f"$.{field}"))
        cases.append(("PATCH", f"/v1/products/{product_id}", {field: "a\x00"}, f"$.{field}"))
    cases.append(("GET", "/v1/products", {"q": "a\x00"}, "$.q"))
    for path in ("/v1/products", "/v1/orders", "/v1/users"):
        cases.append(("GET", path, {"cursor": "W10\x00"}, "$.cursor"))
    return cases


def test_nul_in_any_text_field_is_a_422_that_says_so(client, admin):
    category = create_category(client, admin)
    product = create_product(client, admin)
    for method, path, data, field in _nul_cases(product["id"], category["slug"]):
        if method == "GET":
            result = client.simulate_get(path, params=data, headers=admin["headers"])
        else:
            result = client.simulate_request(method, path, json=data, headers=admin["headers"])
        body = assert_422(result, field)
        assert "NUL" in body["error"]["message"], (method, path, field)
    # Nothing was ordered (the jsonb insert never ran) and stock is untouched.
    assert client.simulate_get(f"/v1/products/{product['id']}").json["stock"] == 10


# -- X-Real-IP ------------------------------------------------------------------


@pytest.mark.parametrize("forwarded", ["fe80::1%eth0", "fe80::1%1", "::1%x"])
def test_an_ipv6_scope_id_in_x_real_ip_is_not_a_500(client, db, forwarded):
    result = client.simulate_post("/v1/auth/login", headers={"X-Real-IP": forwarded},
                                  json={"email": "nobody@example.test", "password": "wrong"})
    assert result.status_code == 401, result.text


def test_the_text_null_in_a_query_is_a_value_not_an_absence(client):
    # A query string has no null: ?in_stock=null is a bad boolean, not "no filter".
    result = client.simulate_get("/v1/products", query_string="in_stock=null")
    body = assert_422(result, "$.in_stock")
    assert body["error"]["details"][0]["message"] == "must be true or false, not a string"
    assert client.simulate_get("/v1/products", query_string="q=null").status_code == 200
