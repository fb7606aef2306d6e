"""The outbox: every order and product change commits its event, and only then."""

from __future__ import annotations

import json
import select
import time
import uuid
from datetime import timedelta

import psycopg2
import pytest

from app.queries import events as outbox
from app.queries import webhooks as webhook_queries
from app.webhooks import signing
from tests.support.api import new_user
from tests.support.catalog import create_product

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


@pytest.fixture
def webhook_db(db):
    with db.cursor() as cur:
        cur.execute("TRUNCATE events, webhook_subscriptions, webhook_deliveries CASCADE")
    return db


def place(client, user, lines, key=None):
    headers = dict(user["headers"], **({"Idempotency-Key": key} if key else {}))
    return client.simulate_post("/v1/orders", headers=headers, json={
        "items": [{"product_id": p, "quantity": q} for p, q in lines],
        "shipping_address": ADDRESS})


def events(db, event_type=None) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute("SELECT type, aggregate_id::text, data, xmin::text FROM events"
                    + (" WHERE type = %s" if event_type else "") + " ORDER BY created_at",
                    (event_type,) if event_type else ())
        return cur.fetchall()


def row_xmin(db, table: str, row_id: str) -> str:
    with db.cursor() as cur:
        cur.execute(f"SELECT xmin::text FROM {table} WHERE id = %s", (row_id,))
        return cur.fetchone()[0]


def subscribe(db, events_=outbox.TYPES, url="https://hooks.example.test/in") -> str:
    with db.cursor() as cur:
        return webhook_queries.insert_subscription(cur, url, list(events_), None,
                                                   signing.new_secret()).id


def test_a_placed_order_commits_its_event_in_the_same_transaction(client, admin, webhook_db):
    product = create_product(client, admin, stock=5)
    result = place(client, new_user(client), [(product["id"], 2)])
    assert result.status_code == 201
    [(event_type, aggregate, data, xmin)] = events(webhook_db, "order.placed")
    assert (event_type, aggregate) == ("order.placed", result.json["id"])
    assert data == result.json  # the order as the API returns it
    # Written by the very transaction that wrote the order.
    assert xmin == row_xmin(webhook_db, "orders", result.json["id"])


def test_an_order_refused_for_stock_leaves_no_event(client, admin, webhook_db):
    plenty = create_product(client, admin, stock=10)
    scarce = create_product(client, admin, stock=1)
    result = place(client, new_user(client), [(plenty["id"], 1), (scarce["id"], 2)])
    assert result.status_code == 409
    assert events(webhook_db, "order.placed") == []


def test_an_order_rolled_back_after_its_event_was_written_leaves_no_event(
        client, admin, webhook_db):
    # Fail the transaction at its last statement (the Idempotency-Key record,
    # written after the event): the order and the event go together.
    product = create_product(client, admin, stock=5)
    with webhook_db.cursor() as cur:
        cur.execute("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")
        cur.execute("CREATE TRIGGER test_refuse BEFORE INSERT ON idempotency_keys"
                    " FOR EACH ROW EXECUTE FUNCTION test_refuse()")
    try:
        result = place(client, new_user(client), [(product["id"], 1)], key="rollback-1")
    finally:
        with webhook_db.cursor() as cur:
            cur.execute("DROP TRIGGER test_refuse ON idempotency_keys")
            cur.execute("DROP FUNCTION test_refuse()")
    assert result.status_code == 500
    assert events(webhook_db, "order.placed") == []
    with webhook_db.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] == 0


def test_an_idempotent_replay_writes_no_second_event(client, admin, webhook_db):
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    assert place(client, user, [(product["id"], 1)], key="k-1").status_code == 201
    assert place(client, user, [(product["id"], 1)], key="k-1").status_code == 201
    assert len(events(webhook_db, "order.placed")) == 1


def test_a_cancellation_commits_its_event(client, admin, webhook_db):
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    order_id = place(client, user, [(product["id"], 1)]).json["id"]
    result = client.simulate_post(f"/v1/orders/{order_id}/cancel", headers=user["headers"])
    assert result.status_code == 200
    [(_, aggregate, data, xmin)] = events(webhook_db, "order.cancelled")
    assert aggregate == order_id and data == result.json and data["status"] == "cancelled"
    assert xmin == row_xmin(webhook_db, "orders", order_id)  # the cancelling transaction
    # A second cancellation is refused and adds nothing.
    again = client.simulate_post(f"/v1/orders/{order_id}/cancel", headers=user["headers"])
    assert again.status_code == 409
    assert len(events(webhook_db, "order.cancelled")) == 1


def test_product_changes_commit_their_events(client, admin, webhook_db):
    product = create_product(client, admin, stock=5)
    path = f"/v1/products/{product['id']}"
    patched = client.simulate_patch(path, json={"price": "11.00"}, headers=admin["headers"])
    assert patched.status_code == 200
    refused = client.simulate_patch(path, json={"price": "12.00"},
                                    headers={**admin["headers"], "If-Match": '"stale"'})
    assert refused.status_code == 412
    assert client.simulate_patch(path, json={}, headers=admin["headers"]).status_code == 200
    assert client.simulate_delete(path, headers=admin["headers"]).status_code == 204
    found = events(webhook_db, "product.updated")
    assert [data for _, _, data, _ in found] == [
        product, patched.json, {"id": product["id"], "deleted": True}]
    assert {aggregate for _, aggregate, _, _ in found} == {product["id"]}


def test_deliveries_fan_out_to_enabled_subscriptions_of_the_type(client, admin, webhook_db):
    orders_only = subscribe(webhook_db, ["order.placed"])
    everything = subscribe(webhook_db)
    disabled = subscribe(webhook_db)
    with webhook_db.cursor() as cur:
        cur.execute("UPDATE webhook_subscriptions SET enabled = false WHERE id = %s", (disabled,))
    product = create_product(client, admin, stock=5)
    order = place(client, new_user(client), [(product["id"], 1)]).json
    with webhook_db.cursor() as cur:
        cur.execute("SELECT e.type, d.subscription_id::text, d.status, d.attempts, e.xmin = d.xmin"
                    " FROM webhook_deliveries d JOIN events e ON e.id = d.event_id")
        rows = sorted(cur.fetchall())
    assert rows == sorted([
        ("order.placed", orders_only, "pending", 0, True),
        ("order.placed", everything, "pending", 0, True),
        ("product.updated", everything, "pending", 0, True),
    ])
    assert order["id"]  # the order committed with them


def test_prune_removes_finished_rows_after_seven_days(webhook_db):
    subscription = subscribe(webhook_db)
    with webhook_db.cursor() as cur:
        ids = [outbox.record(cur, "order.placed", f"00000000-0000-4000-8000-00000000000{n}",
                             json.dumps({"n": n})) for n in range(4)]
        old = "now() - interval '8 days'"
        # 0: succeeded long ago, 1: dead long ago, 2: failed long ago (still retrying), 3: recent
        for event_id, status, age in ((ids[0], "succeeded", old), (ids[1], "dead", old),
                                      (ids[2], "failed", old), (ids[3], "succeeded", "now()")):
            cur.execute(f"UPDATE webhook_deliveries SET status = %s, created_at = {age}"
                        " WHERE event_id = %s", (status, event_id))
            cur.execute(f"UPDATE events SET created_at = {age} WHERE id = %s", (event_id,))
        assert outbox.prune(cur, timedelta(days=outbox.KEEP_DAYS)) == (2, 2)
        cur.execute("SELECT id::text FROM events ORDER BY id")
        assert sorted(r[0] for r in cur.fetchall()) == sorted([ids[2], ids[3]])
        cur.execute("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = %s",
                    (subscription,))
        assert cur.fetchone()[0] == 2


def notifications(listener, wait: float = 0.3) -> int:
    """How many NOTIFYs on the webhook channel ``listener`` received within ``wait``."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        select.select([listener], [], [], max(deadline - time.monotonic(), 0))
        listener.poll()
    count = len(listener.notifies)
    listener.notifies.clear()
    return count


@pytest.fixture
def listener(webhook_db):
    conn = psycopg2.connect(webhook_db.dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {outbox.CHANNEL}")
    yield conn
    conn.close()


def record(conn, aggregate_id: str) -> None:
    with conn.cursor() as cur:
        outbox.record(cur, outbox.ORDER_PLACED, aggregate_id, json.dumps({"id": aggregate_id}))


def test_a_session_notifies_at_most_once_per_window(webhook_db, listener):
    subscribe(webhook_db)
    for _ in range(5):  # five commits, well inside one window
        record(webhook_db, str(uuid.uuid4()))
    assert notifications(listener) == 1
    time.sleep(outbox.NOTIFY_WINDOW)  # the window has passed: the next commit notifies
    record(webhook_db, str(uuid.uuid4()))
    assert notifications(listener) == 1


def test_sessions_coalesce_independently(webhook_db, listener):
    subscribe(webhook_db)
    other = psycopg2.connect(webhook_db.dsn)
    other.autocommit = True
    try:
        record(webhook_db, str(uuid.uuid4()))
        record(other, str(uuid.uuid4()))
    finally:
        other.close()
    assert notifications(listener) == 2


def test_a_rolled_back_notify_does_not_silence_the_next_commit(webhook_db, listener):
    subscribe(webhook_db)
    conn = psycopg2.connect(webhook_db.dsn)
    try:
        with conn.cursor() as cur:  # a transaction: its NOTIFY goes out only at commit
            outbox.record(cur, outbox.ORDER_PLACED, str(uuid.uuid4()), "{}")
        conn.rollback()
        record(conn, str(uuid.uuid4()))
        conn.commit()
    finally:
        conn.close()
    assert notifications(listener) == 1


def test_no_subscription_no_notify(webhook_db, listener):
    record(webhook_db, str(uuid.uuid4()))
    assert notifications(listener) == 0


def test_a_commit_skips_its_notify_while_another_transaction_is_about_to_send_one(
        webhook_db, listener):
    subscribe(webhook_db)
    holder = psycopg2.connect(webhook_db.dsn)
    try:
        with holder.cursor() as cur:  # its NOTIFY goes out when it commits
            outbox.record(cur, outbox.ORDER_PLACED, str(uuid.uuid4()), "{}")
        record(webhook_db, str(uuid.uuid4()))  # commits meanwhile: nobody waits, nothing sent
        assert notifications(listener, 0.2) == 0
        holder.commit()
    finally:
        holder.close()
    assert notifications(listener) == 1
    # The skipped session did not notify, so its window is open: its next commit notifies.
    record(webhook_db, str(uuid.uuid4()))
    assert notifications(listener) == 1
