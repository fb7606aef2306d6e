"""The one-statement placement (place_order() in SQL) answers as msgspec would.

The response body of POST /v1/orders is built by Postgres; these tests hold
it to the bytes that msgspec produces for the same order read back, which
is what GET /v1/orders/{id}, the event and an Idempotency-Key replay carry.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from app.queries import orders as q
from app.schemas.orders import Address
from tests.support.api import new_user
from tests.support.catalog import create_product

# Escapes, quotes and non-ASCII text: the address is the one value in the
# body that needs JSON encoding.
ADDRESS = {"line1": 'Flat "B", 1\\2 Ährenweg', "city": "Zürich ☃", "postal_code": "8001",
           "country": "CH"}


def place(client, user, lines, key=None):
    headers = dict(user["headers"], **({"Idempotency-Key": key} if key else {}))
    return client.simulate_post("/v1/orders", headers=headers, json={
        "items": [{"product_id": p, "quantity": n} for p, n in lines],
        "shipping_address": ADDRESS})


def test_the_body_is_the_order_as_read_back_byte_for_byte(client, admin, db):
    products = [create_product(client, admin, price=price, stock=20)
                for price in ("12.50", "0.99", "1000.00")]
    user = new_user(client)
    # Not in id order, one id upper-cased: the answer keeps the client's
    # line order and the canonical spelling.
    lines = [(products[2]["id"].upper(), 3), (products[0]["id"], 1), (products[1]["id"], 7)]
    result = place(client, user, lines, key="bytes-1")
    assert result.status_code == 201, result.text
    assert result.json["total"] == "3019.43"
    assert [item["product_id"] for item in result.json["items"]] == [
        products[2]["id"], products[0]["id"], products[1]["id"]]
    fetched = client.simulate_get(f"/v1/orders/{result.json['id']}", headers=user["headers"])
    assert fetched.status_code == 200
    assert result.content == fetched.content
    replay = place(client, user, lines, key="bytes-1")
    assert (replay.status_code, replay.content) == (201, result.content)
    with db.cursor() as cur:
        cur.execute("SELECT data FROM events WHERE aggregate_id = %s", (result.json["id"],))
        assert cur.fetchone()[0] == result.json


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Berlin"])
def test_json_timestamp_is_msgspecs_datetime(db, zone):
    base = datetime(2026, 3, 29, 0, 59, 59, tzinfo=timezone.utc)
    moments = [base, base + timedelta(microseconds=1), base + timedelta(seconds=1),
               base + timedelta(microseconds=120_000), datetime(1999, 12, 31, 23, 0,
                                                                tzinfo=timezone.utc)]
    with db.cursor() as cur:
        cur.execute("SET TimeZone = %s", (zone,))
        try:
            for moment in moments:
                # psycopg2 reads it back in the session's zone, as the API does.
                cur.execute("SELECT json_timestamp(%s), %s::timestamptz", (moment, moment))
                text, read_back = cur.fetchone()
                assert msgspec.json.encode(read_back) == f'"{text}"'.encode(), (zone, moment)
        finally:
            cur.execute("RESET TimeZone")


def test_a_session_in_another_time_zone_still_answers_as_msgspec(client, admin, db):
    product = create_product(client, admin, price="4.20", stock=5)
    user = new_user(client)
    address = msgspec.convert(ADDRESS, Address)
    with db.cursor() as cur:
        cur.execute("SET TimeZone = 'Asia/Kolkata'")
        try:
            body = q.place(cur, user["id"], None, hashlib.sha256(b"tz").digest(),
                           [(product["id"], 2)], address)
            assert body is not None
            order = q.order(cur, msgspec.json.decode(body)["id"], None)
        finally:
            cur.execute("RESET TimeZone")
    assert body == msgspec.json.encode(order)
    assert b'+05:30"' in body


def test_refusals_write_nothing_and_say_why(client, admin, db):
    plenty = create_product(client, admin, stock=10)
    scarce = create_product(client, admin, stock=1)
    euro = create_product(client, admin, stock=10, currency="EUR")
    dearest = create_product(client, admin, stock=100, price="9999999999.99")
    second = create_product(client, admin, stock=100, price="9999999999.99")
    user = new_user(client)
    address = msgspec.convert(ADDRESS, Address)
    missing = "00000000-0000-4000-8000-000000000000"
    digest = hashlib.sha256(b"refused").digest()
    with db.cursor() as cur:
        with pytest.raises(q.OutOfStock) as short:
            q.place(cur, user["id"], "refused-1", digest, [(plenty["id"], 1), (scarce["id"], 2)],
                    address)
        assert short.value.product_ids == [scarce["id"]]
        with pytest.raises(q.UnknownProducts) as unknown:
            q.place(cur, user["id"], "refused-1", digest, [(missing, 1), (scarce["id"], 2)],
                    address)
        assert unknown.value.product_ids == [missing]
        with pytest.raises(q.MixedCurrencies):
            q.place(cur, user["id"], "refused-1", digest, [(plenty["id"], 1), (euro["id"], 1)],
                    address)
        with pytest.raises(q.UnknownUser):
            q.place(cur, missing, None, digest, [(plenty["id"], 1)], address)
        with pytest.raises(q.TotalTooLarge):
            q.place(cur, user["id"], "refused-1", digest,
                    [(dearest["id"], 100), (second["id"], 1)], address)
        cur.execute("SELECT stock FROM products WHERE id IN (%s, %s, %s, %s) ORDER BY stock",
                    (plenty["id"], scarce["id"], euro["id"], dearest["id"]))
        assert [row[0] for row in cur.fetchall()] == [1, 10, 10, 100]
        cur.execute("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM events"
                    " WHERE type = 'order.placed'), (SELECT count(*) FROM idempotency_keys)")
        assert cur.fetchone() == (0, 0, 0)


def test_an_order_whose_total_cannot_be_stored_is_a_422_that_names_the_limit(client, admin, db):
    # One line fits (100 x the largest price is 999,999,999,999.00); two do not.
    dear = [create_product(client, admin, stock=100, price="9999999999.99") for _ in range(2)]
    user = new_user(client)
    result = place(client, user, [(dear[0]["id"], 100), (dear[1]["id"], 1)])
    assert result.status_code == 422, result.text
    error = result.json["error"]
    assert error["code"] == "validation_failed"
    assert q.MAX_TOTAL in error["message"]
    assert error["details"] == [{"field": "$.items", "message": "total too large"}]
    with db.cursor() as cur:
        cur.execute("SELECT stock FROM products WHERE id IN (%s, %s)",
                    (dear[0]["id"], dear[1]["id"]))
        assert [row[0] for row in cur.fetchall()] == [100, 100]
    placed = place(client, user, [(dear[0]["id"], 100)])
    assert placed.status_code == 201 and placed.json["total"] == "999999999999.00"
