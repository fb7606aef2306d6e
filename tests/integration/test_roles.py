"""Admin authority comes from the account's current role, never from a token alone."""

from __future__ import annotations

import threading

import psycopg2

from tests.support.api import new_user
from tests.support.http import request
from tests.support.waiting import lock_waiters, wait_until


def _role(db, user_id):
    with db.cursor() as cur:
        cur.execute("SELECT role FROM users WHERE id = %s", (user_id,))
        return cur.fetchone()[0]


def test_a_demoted_admin_loses_admin_power_with_its_old_token(client, db):
    boss, demoted = new_user(client, "admin", db), new_user(client, "admin", db)
    assert client.simulate_get("/v1/users", headers=demoted["headers"]).status_code == 200
    result = client.simulate_patch(f"/v1/users/{demoted['id']}", json={"role": "user"},
                                   headers=boss["headers"])
    assert result.status_code == 200 and result.json["role"] == "user"

    # The access token still says "admin"; the account no longer is.
    listing = client.simulate_get("/v1/users", headers=demoted["headers"])
    assert listing.status_code == 403 and listing.json["error"]["code"] == "forbidden"
    other = client.simulate_get(f"/v1/users/{boss['id']}", headers=demoted["headers"])
    assert other.status_code == 404
    again = client.simulate_patch(f"/v1/users/{demoted['id']}", json={"role": "admin"},
                                  headers=demoted["headers"])
    assert again.status_code == 403
    assert _role(db, demoted["id"]) == "user"
    # Its own account still works as a user's.
    assert client.simulate_get("/v1/users/me", headers=demoted["headers"]).status_code == 200


def test_a_deleted_admins_token_stops_working(client, db):
    admin = new_user(client, "admin", db)
    with db.cursor() as cur:
        cur.execute("DELETE FROM refresh_families WHERE user_id = %s", (admin["id"],))
        cur.execute("DELETE FROM users WHERE id = %s", (admin["id"],))
    result = client.simulate_get("/v1/users", headers=admin["headers"])
    assert result.status_code == 401 and result.json["error"]["code"] == "unauthorized"


def test_an_admin_cannot_change_its_own_role(client, db):
    admin, _ = new_user(client, "admin", db), new_user(client, "admin", db)
    result = client.simulate_patch(f"/v1/users/{admin['id']}", json={"role": "user"},
                                   headers=admin["headers"])
    assert result.status_code == 403 and result.json["error"]["code"] == "forbidden"
    assert _role(db, admin["id"]) == "admin"
    # A name change of its own account is fine.
    renamed = client.simulate_patch(f"/v1/users/{admin['id']}", json={"name": "Still Boss"},
                                    headers=admin["headers"])
    assert renamed.status_code == 200 and renamed.json["role"] == "admin"


def test_a_promotion_reaches_the_token_at_the_next_refresh(client, db):
    boss, user = new_user(client, "admin", db), new_user(client)
    assert client.simulate_patch(f"/v1/users/{user['id']}", json={"role": "admin"},
                                 headers=boss["headers"]).status_code == 200
    refreshed = client.simulate_post("/v1/auth/refresh",
                                     json={"refresh_token": user["refresh_token"]})
    headers = {"Authorization": "Bearer " + refreshed.json["access_token"]}
    assert client.simulate_get("/v1/users", headers=headers).status_code == 200


def test_two_admins_demoting_each_other_at_once_leave_one_admin(live_server, postgres, db):
    """Both requests pass the role check, then meet at the admin rows' locks."""
    url = live_server.url
    ann, bob = _live_admin(url, db, "ann"), _live_admin(url, db, "bob")
    results = {}

    def demote(actor, target):
        results[actor["id"]] = request(url + f"/v1/users/{target['id']}", "PATCH",
                                       {"role": "user"}, headers=actor["headers"])

    holder = psycopg2.connect(postgres.dsn())
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT id FROM users WHERE role = 'admin' FOR UPDATE")
        threads = [threading.Thread(target=demote, args=(ann, bob)),
                   threading.Thread(target=demote, args=(bob, ann))]
        for thread in threads:
            thread.start()
        wait_until(lambda: lock_waiters(postgres.dsn()) >= 2)
    finally:
        holder.rollback()
        holder.close()
    for thread in threads:
        thread.join(30)
    statuses = sorted(r.status for r in results.values())
    assert statuses == [200, 403], statuses
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM users WHERE role = 'admin'")
        assert cur.fetchone()[0] == 1


def _live_admin(url, db, name):
    from tests.support.api import PASSWORD, unique_email

    email = unique_email(name)
    created = request(url + "/v1/auth/register", "POST",
                      {"email": email, "password": PASSWORD, "name": name})
    assert created.status == 201
    with db.cursor() as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE id = %s", (created.json["id"],))
    pair = request(url + "/v1/auth/login", "POST", {"email": email, "password": PASSWORD},
                   headers={"X-Real-IP": f"192.0.2.{len(name)}{ord(name[0]) % 10}"})
    assert pair.status == 200
    return {"id": created.json["id"],
            "headers": {"Authorization": "Bearer " + pair.json["access_token"]}}


def test_a_deleted_users_token_cannot_place_an_order(client, db):
    admin, buyer = new_user(client, "admin", db), new_user(client)
    from tests.support.catalog import create_product

    product = create_product(client, admin)
    with db.cursor() as cur:
        cur.execute("DELETE FROM users WHERE id = %s", (buyer["id"],))
    for headers in (buyer["headers"], {**buyer["headers"], "Idempotency-Key": "k1"}):
        result = client.simulate_post("/v1/orders", headers=headers, json={
            "items": [{"product_id": product["id"], "quantity": 1}],
            "shipping_address": {"line1": "1 Main St", "city": "X", "postal_code": "1",
                                 "country": "US"}})
        assert result.status_code == 401, result.text
        assert result.json["error"]["code"] == "unauthorized"
