"""Export (everything about the caller, nothing of anyone else) and account deletion."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import msgspec
import psycopg2

from app.queries import orders as order_queries
from app.queries import personal_data
from app.schemas.orders import Address
from tests.support.api import PASSWORD, new_user
from tests.support.catalog import create_product
from tests.support.waiting import lock_waiters, wait_until

ADDRESS = {"line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU",
           "country": "GB"}


def place(client, user, product_id, quantity=1):
    result = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product_id, "quantity": quantity}],
        "shipping_address": ADDRESS})
    assert result.status_code == 201, result.text
    return result.json


def export(client, user):
    result = client.simulate_get("/v1/users/me/export", headers=user["headers"])
    assert result.status_code == 200, result.text
    return result.json


def delete_me(client, user, password=PASSWORD):
    return client.simulate_delete("/v1/users/me", headers=user["headers"],
                                  json={"current_password": password})


def test_the_export_holds_the_callers_data_and_nothing_of_anyone_else(client, admin, db):
    product = create_product(client, admin)
    user, other = new_user(client), new_user(client)
    mine = [place(client, user, product["id"]), place(client, user, product["id"], 2)]
    theirs = place(client, other, product["id"])
    client.simulate_post("/v1/auth/login", json={"email": user["email"], "password": "wrong"})
    # What happens to another account (here an admin renaming it) stays out.
    client.simulate_patch(f"/v1/users/{other['id']}", headers=admin["headers"],
                          json={"name": "Renamed"})

    data = export(client, user)
    assert data["profile"]["id"] == user["id"]
    assert data["profile"]["email"] == user["email"]
    assert data["profile"]["email_verified"] is False
    assert {o["id"] for o in data["orders"]} == {o["id"] for o in mine}
    assert all(o["shipping_address"] == ADDRESS for o in data["orders"])
    assert len(data["sessions"]) == 1 and data["sessions"][0]["revoked_at"] is None
    actions = [entry["action"] for entry in data["audit"]]
    assert actions[:2] == ["user.register", "auth.login"]
    assert "auth.login_failed" in actions
    assert data["two_factor"] == {"totp": False, "recovery_codes_left": 0}
    text = str(data)
    for foreign in (other["id"], other["email"], theirs["id"], admin["id"], admin["email"]):
        assert foreign not in text
    assert "password" not in text.replace("password_changed", "")


def test_deletion_needs_the_password(client, db):
    user = new_user(client)
    assert delete_me(client, user, "not the password").status_code == 403
    assert client.simulate_get("/v1/users/me", headers=user["headers"]).status_code == 200


def test_after_deletion_tokens_and_login_fail_and_orders_stay_without_personal_data(
        client, admin, db):
    product = create_product(client, admin)
    user = new_user(client)
    order = place(client, user, product["id"])
    assert delete_me(client, user).status_code == 204

    assert client.simulate_get("/v1/users/me", headers=user["headers"]).status_code == 401
    assert client.simulate_post("/v1/auth/refresh", json={
        "refresh_token": user["refresh_token"]}).status_code == 401
    assert client.simulate_post("/v1/auth/login", json={
        "email": user["email"], "password": PASSWORD}).status_code == 401
    assert client.simulate_get(f"/v1/users/{user['id']}",
                               headers=admin["headers"]).status_code == 404

    kept = client.simulate_get(f"/v1/orders/{order['id']}", headers=admin["headers"])
    assert kept.status_code == 200, kept.text
    assert kept.json["user_id"] is None
    assert kept.json["total"] == order["total"] and kept.json["items"] == order["items"]
    assert ADDRESS["line1"] not in kept.text and ADDRESS["postal_code"] not in kept.text
    listed = client.simulate_get("/v1/orders", headers=admin["headers"])
    assert listed.status_code == 200 and order["id"] in listed.text
    # A still-unexpired access token cannot place an order for the gone account.
    late = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
    assert late.status_code == 401, late.text
    # Nor read its orders: the list says the account is gone, the order is not its any more.
    assert client.simulate_get("/v1/orders", headers=user["headers"]).status_code == 401
    assert client.simulate_get(f"/v1/orders/{order['id']}",
                               headers=user["headers"]).status_code == 404

    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM users WHERE id = %s", (user["id"],))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM refresh_families WHERE user_id = %s", (user["id"],))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM audit_log WHERE subject_id = %s AND ip IS NOT NULL",
                    (user["id"],))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM audit_log WHERE subject_id = %s"
                    " AND action = 'user.deleted'", (user["id"],))
        assert cur.fetchone()[0] == 1
    # The address is free again.
    again = client.simulate_post("/v1/auth/register", json={
        "email": user["email"], "password": PASSWORD, "name": "Back"})
    assert again.status_code == 201


def test_the_last_admin_cannot_be_deleted(client, admin, db):
    assert delete_me(client, admin).status_code == 409
    second = new_user(client, "admin", db)
    assert delete_me(client, admin).status_code == 204
    assert delete_me(client, second).status_code == 409
    user = new_user(client)
    assert delete_me(client, user).status_code == 204


def test_an_order_committed_while_the_account_is_erased_keeps_no_address(client, admin, db,
                                                                         postgres):
    """Two sessions: an order not yet committed when the erasure starts is redacted too."""
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    placing = psycopg2.connect(postgres.dsn())  # the order's transaction, still open
    try:
        with placing.cursor() as cur:
            assert order_queries.place(cur, user["id"], None, hashlib.sha256(b"e").digest(),
                                       [(product["id"], 1)], msgspec.convert(ADDRESS, Address))

        def erase():
            conn = psycopg2.connect(postgres.dsn())
            try:
                with conn, conn.cursor() as cur:
                    return personal_data.erase(cur, user["id"])
            finally:
                conn.close()

        with ThreadPoolExecutor(1) as pool:
            erasing = pool.submit(erase)
            wait_until(lambda: lock_waiters(postgres.dsn()))
            assert not erasing.done(), "the erasure should wait for the order"
            placing.commit()
            assert erasing.result(timeout=10) == (1, True)
    finally:
        placing.close()
    with db.cursor() as cur:
        cur.execute("SELECT user_id, shipping_address FROM orders")
        assert cur.fetchall() == [(None, personal_data.REDACTED_ADDRESS)]
