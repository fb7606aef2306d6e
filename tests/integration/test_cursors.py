"""Forged pagination cursors are a 422 on ``cursor``, on every paginated route.

A cursor is unsigned base64url JSON, so anyone can send any bytes in one.
Shapes msgspec accepts but Postgres does not (UTC offsets past +-15:59, NaN
and huge decimals, NUL, an id plus a newline) used to become 500s.
"""

import base64
import json

import pytest

from tests.support.api import new_user

ID = "00000000-0000-4000-8000-000000000000"


def cursor(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Valid for none of the routes: junk, wrong shapes, and values past what Postgres takes.
ANY_ROUTE = [
    "!!!!", "a", "====", "\u00e9t\u00e9", "W10\x00", cursor(b"\xff\xfe\x00"), cursor(b"not json"),
    cursor(b"[1, 2"), cursor({"a": 1}), cursor([]), cursor([None, ID]), cursor([[], ID]),
    cursor(["x", ID, "extra"]), cursor(["x"]), cursor([1e400, ID]), cursor(10**400),
    cursor(["x", ID + "\n"]), cursor(["x", "\n" + ID]), cursor(["x", ID.upper() + "\u2028"]),
    cursor(["x", "' OR 1=1 --"]),
]
DATETIME = [
    # Offsets past Postgres' +-15:59 that also leave the calendar in UTC.
    cursor(["0001-01-01T00:00:00+23:59", ID]), cursor(["9999-12-31T23:59:59-23:59", ID]),
    cursor(["2020-01-01T00:00:00", ID]),  # no offset: we only issue UTC
    cursor(["2020-13-01T00:00:00Z", ID]), cursor([1e308, ID]), cursor(["nan", ID]),
]
DECIMAL = [
    cursor(["NaN", ID]), cursor(["sNaN", ID]), cursor(["Infinity", ID]),
    cursor(["-Infinity", ID]), cursor(["1e999999", ID]), cursor(["-1e999999", ID]),
    cursor([1e308, ID]), cursor(["1e12", ID]),
]
TEXT = [cursor(["a\u0000b", ID])]


def assert_cursor_422(result, value):
    assert result.status_code == 422, (value, result.status_code, result.text[:300])
    body = result.json
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["details"][0]["field"] == "$.cursor"
    assert body["request_id"] == result.headers["x-request-id"]


@pytest.mark.parametrize(("sort", "crafted"), [
    ("-created_at", ANY_ROUTE + DATETIME), ("created_at", DATETIME),
    ("price", ANY_ROUTE + DECIMAL), ("-price", DECIMAL),
    ("name", ANY_ROUTE + TEXT), ("-name", TEXT),
])
def test_products_refuse_forged_cursors(client, db, sort, crafted):
    for value in crafted:
        result = client.simulate_get("/v1/products", params={"sort": sort, "cursor": value})
        assert_cursor_422(result, value)


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/users"])
def test_orders_and_users_refuse_forged_cursors(client, admin, path):
    for value in ANY_ROUTE + DATETIME:
        result = client.simulate_get(path, params={"cursor": value}, headers=admin["headers"])
        assert_cursor_422(result, value)


def test_a_datetime_with_any_offset_is_compared_in_utc(client, admin):
    # Postgres refuses offsets past +-15:59; the cursor is moved to UTC first.
    value = cursor(["2020-01-01T00:00:00+23:00", ID])
    result = client.simulate_get("/v1/orders", params={"cursor": value},
                                 headers=admin["headers"])
    assert result.status_code == 200, result.text


def test_issued_cursors_still_page_through(client, admin):
    """The cursors the service hands out keep working after the checks."""
    for _ in range(3):
        new_user(client)
    seen, next_cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": next_cursor} if next_cursor else {})}
        page = client.simulate_get("/v1/users", params=params, headers=admin["headers"])
        assert page.status_code == 200, page.text
        seen += [u["id"] for u in page.json["items"]]
        next_cursor = page.json["next_cursor"]
        if next_cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4
