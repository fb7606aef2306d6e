"""The one-statement placement (place_order() in SQL) answers as msgspec would.

The response body of POST /v1/orders is built by Postgres; these tests hold
it to the bytes that msgspec produces for the same order read back, which
is what GET /v1/orders/{id}, the event and an Idempotency-Key replay carry.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import msgspec
import psycopg2
import pytest

from app.queries import orders as q
from app.schemas.orders import Address
from tests.support.api import new_user
from tests.support.catalog import create_product
from tests.support.waiting import lock_waiters, wait_until

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


def _counts(db, product_id):
    with db.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM idempotency_keys),"
                    " (SELECT stock FROM products WHERE id = %s)", (product_id,))
        return cur.fetchone()


def test_a_retry_waits_for_the_first_request_and_then_replays_it(client, admin, db, postgres):
    """Two sessions, one key: the second waits until the first commits, and writes nothing."""
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    address = msgspec.convert(ADDRESS, Address)
    digest = hashlib.sha256(b"retry").digest()
    first = psycopg2.connect(postgres.dsn())  # a transaction left open: the first request
    try:
        with first.cursor() as cur:
            body = q.place(cur, user["id"], "retry-1", digest, [(product["id"], 2)], address)
        assert body is not None
        with ThreadPoolExecutor(1) as pool:
            retry = pool.submit(_place_autocommit, postgres.dsn(), user["id"], "retry-1", digest,
                                [(product["id"], 2)], address)
            wait_until(lambda: lock_waiters(postgres.dsn()))
            assert not retry.done()
            first.commit()
            assert retry.result(timeout=10) is None  # the key is taken: replay
    finally:
        first.close()
    assert _counts(db, product["id"]) == (1, 1, 3)
    with db.cursor() as cur:
        assert q.stored_response(cur, user["id"], "retry-1") == (digest, 201, body)


def test_a_retry_after_the_first_rolled_back_places_the_order(client, admin, db, postgres):
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    address = msgspec.convert(ADDRESS, Address)
    digest = hashlib.sha256(b"rolled back").digest()
    first = psycopg2.connect(postgres.dsn())
    try:
        with first.cursor() as cur:
            assert q.place(cur, user["id"], "back-1", digest, [(product["id"], 1)], address)
        with ThreadPoolExecutor(1) as pool:
            retry = pool.submit(_place_autocommit, postgres.dsn(), user["id"], "back-1", digest,
                                [(product["id"], 1)], address)
            wait_until(lambda: lock_waiters(postgres.dsn()))
            first.rollback()
            assert retry.result(timeout=10) is not None
    finally:
        first.close()
    assert _counts(db, product["id"]) == (1, 1, 4)


def test_a_key_stored_by_a_writer_outside_the_lock_rolls_the_order_back(client, admin, db,
                                                                       postgres, caplog):
    """Should anything else store the key meanwhile, the order is undone and replayed."""
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    address = msgspec.convert(ADDRESS, Address)
    other = psycopg2.connect(postgres.dsn())
    try:
        with other.cursor() as cur:  # no advisory lock: straight into the table, uncommitted
            cur.execute("INSERT INTO idempotency_keys (user_id, key, request_hash,"
                        " response_status, response_body) VALUES (%s, 'outside-1', '', 201,"
                        " 'stored')", (user["id"],))
        with ThreadPoolExecutor(1) as pool:
            placing = pool.submit(_place_autocommit, postgres.dsn(), user["id"], "outside-1",
                                  b"x", [(product["id"], 1)], address)
            wait_until(lambda: lock_waiters(postgres.dsn()))  # waits on the key's index entry
            assert not placing.done()
            other.commit()
            assert placing.result(timeout=10) is None
    finally:
        other.close()
    assert _counts(db, product["id"]) == (0, 1, 5)
    assert "appeared outside its lock" in caplog.text


def test_a_retry_while_its_record_is_being_pruned_waits_and_places_anew(client, admin, db,
                                                                        postgres):
    """A record deleted under a retry (prune, an erased account) is waited for, not replayed."""
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    address = msgspec.convert(ADDRESS, Address)
    digest = hashlib.sha256(b"pruned").digest()
    assert _place_autocommit(postgres.dsn(), user["id"], "pruned-1", digest,
                             [(product["id"], 1)], address) is not None
    pruning = psycopg2.connect(postgres.dsn())
    try:
        with pruning.cursor() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE key = 'pruned-1'")
        with ThreadPoolExecutor(1) as pool:
            retry = pool.submit(_place_autocommit, postgres.dsn(), user["id"], "pruned-1",
                                digest, [(product["id"], 1)], address)
            wait_until(lambda: lock_waiters(postgres.dsn()))
            pruning.commit()
            assert retry.result(timeout=10) is not None  # a first request again
    finally:
        pruning.close()
    assert _counts(db, product["id"]) == (2, 1, 3)


def _place_autocommit(dsn, user_id, key, digest, lines, address):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            return q.place(cur, user_id, key, digest, lines, address)
    finally:
        conn.close()
