"""Orders: stock, idempotency, cancellation and object-level access."""

import pytest

from tests.support.api import new_user
from tests.support.catalog import create_product

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


def order(client, user, lines, key=None):
    headers = dict(user["headers"])
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.simulate_post("/v1/orders", headers=headers, json={
        "items": [{"product_id": p, "quantity": q} for p, q in lines],
        "shipping_address": ADDRESS})


def stock(client, product_id):
    return client.simulate_get(f"/v1/products/{product_id}").json["stock"]


def test_place_an_order(client, admin):
    hammer = create_product(client, admin, price="12.50", stock=5)
    saw = create_product(client, admin, price="3.25", stock=5)
    user = new_user(client)
    result = order(client, user, [(hammer["id"], 2), (saw["id"], 1)])
    assert result.status_code == 201, result.text
    body = result.json
    assert body["status"] == "placed" and body["total"] == "28.25" and body["currency"] == "USD"
    assert body["items"] == [
        {"product_id": hammer["id"], "quantity": 2, "unit_price": "12.50"},
        {"product_id": saw["id"], "quantity": 1, "unit_price": "3.25"}]
    assert stock(client, hammer["id"]) == 3 and stock(client, saw["id"]) == 4
    assert result.headers["Location"] == f"/v1/orders/{body['id']}"
    fetched = client.simulate_get(result.headers["Location"], headers=user["headers"])
    assert fetched.status_code == 200 and fetched.json == body


def test_out_of_stock_names_the_products_and_changes_nothing(client, admin, db):
    plenty = create_product(client, admin, stock=10)
    scarce = create_product(client, admin, stock=1)
    user = new_user(client)
    result = order(client, user, [(plenty["id"], 1), (scarce["id"], 2)])
    assert result.status_code == 409
    assert result.json["error"]["code"] == "out_of_stock"
    assert scarce["id"] in result.json["error"]["message"]
    assert plenty["id"] not in result.json["error"]["message"]
    assert stock(client, plenty["id"]) == 10 and stock(client, scarce["id"]) == 1
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] == 0


@pytest.mark.parametrize(("items", "status"), [
    ([], 422),
    ([{"product_id": "00000000-0000-4000-8000-000000000000", "quantity": 0}], 422),
    ([{"product_id": "00000000-0000-4000-8000-000000000000", "quantity": 101}], 422),
    ([{"product_id": "not-a-uuid", "quantity": 1}], 422),
    ([{"product_id": "00000000-0000-4000-8000-000000000000", "quantity": 1}], 422),  # unknown
    ([{"product_id": "00000000-0000-4000-8000-000000000000", "quantity": 1}] * 51, 422),
])
def test_bad_orders_are_rejected(client, items, status):
    user = new_user(client)
    result = client.simulate_post("/v1/orders", headers=user["headers"],
                                  json={"items": items, "shipping_address": ADDRESS})
    assert result.status_code == status, result.text


def test_duplicate_lines_and_bad_address_are_422(client, admin):
    product = create_product(client, admin)
    user = new_user(client)
    dup = order(client, user, [(product["id"], 1), (product["id"], 2)])
    assert dup.status_code == 422
    assert dup.json["error"]["details"][0]["field"] == "$.items[1].product_id"
    bad = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1}],
        "shipping_address": {**ADDRESS, "country": "USA"}})
    assert bad.status_code == 422
    assert bad.json["error"]["details"][0]["field"] == "$.shipping_address.country"


def test_idempotent_retry_returns_the_first_order_and_takes_stock_once(client, admin, db):
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    first = order(client, user, [(product["id"], 2)], key="retry-1")
    second = order(client, user, [(product["id"], 2)], key="retry-1")
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    # The replay is the same 201, naming the same order.
    assert second.headers["Location"] == first.headers["Location"] == (
        f"/v1/orders/{first.json['id']}")
    assert stock(client, product["id"]) == 3
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] == 1


def test_same_key_with_another_body_is_422(client, admin):
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    assert order(client, user, [(product["id"], 1)], key="k").status_code == 201
    other = order(client, user, [(product["id"], 2)], key="k")
    assert other.status_code == 422 and other.json["error"]["code"] == "validation_failed"


def test_keys_are_per_user(client, admin):
    product = create_product(client, admin, stock=5)
    alice, bob = new_user(client), new_user(client)
    a = order(client, alice, [(product["id"], 1)], key="shared")
    b = order(client, bob, [(product["id"], 1)], key="shared")
    assert a.status_code == b.status_code == 201 and a.json["id"] != b.json["id"]


def test_overlong_idempotency_key_is_400(client, admin):
    product = create_product(client, admin)
    user = new_user(client)
    assert order(client, user, [(product["id"], 1)], key="k" * 256).status_code == 400


def test_failed_order_does_not_consume_the_key(client, admin):
    product = create_product(client, admin, stock=1)
    user = new_user(client)
    assert order(client, user, [(product["id"], 2)], key="later").status_code == 409
    client.simulate_patch(f"/v1/products/{product['id']}", json={"stock": 5},
                          headers=admin["headers"])
    assert order(client, user, [(product["id"], 2)], key="later").status_code == 201


def test_cancel_restores_stock_once(client, admin):
    product = create_product(client, admin, stock=5)
    user = new_user(client)
    placed = order(client, user, [(product["id"], 3)]).json
    assert stock(client, product["id"]) == 2
    cancelled = client.simulate_post(f"/v1/orders/{placed['id']}/cancel", headers=user["headers"])
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert stock(client, product["id"]) == 5
    again = client.simulate_post(f"/v1/orders/{placed['id']}/cancel", headers=user["headers"])
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert stock(client, product["id"]) == 5


def test_another_users_order_is_404_everywhere(client, admin):
    product = create_product(client, admin)
    alice, bob = new_user(client), new_user(client)
    placed = order(client, alice, [(product["id"], 1)]).json
    assert client.simulate_get(f"/v1/orders/{placed['id']}",
                               headers=bob["headers"]).status_code == 404
    assert client.simulate_post(f"/v1/orders/{placed['id']}/cancel",
                                headers=bob["headers"]).status_code == 404
    assert client.simulate_get("/v1/orders", headers=bob["headers"]).json["items"] == []
    assert client.simulate_get("/v1/orders", query_string=f"user_id={alice['id']}",
                               headers=bob["headers"]).status_code == 404
    # The admin sees it, and can filter by user.
    assert client.simulate_get(f"/v1/orders/{placed['id']}",
                               headers=admin["headers"]).status_code == 200
    listed = client.simulate_get("/v1/orders", query_string=f"user_id={alice['id']}",
                                 headers=admin["headers"]).json
    assert [o["id"] for o in listed["items"]] == [placed["id"]]


def test_listing_is_newest_first_with_keyset_pagination(client, admin):
    product = create_product(client, admin, stock=100)
    user = new_user(client)
    placed = [order(client, user, [(product["id"], 1)]).json["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        qs = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.simulate_get("/v1/orders", query_string=qs, headers=user["headers"]).json
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(placed))


def test_order_updates_the_cached_product_stock(client, admin):
    product = create_product(client, admin, stock=4)
    assert stock(client, product["id"]) == 4  # now cached
    order(client, new_user(client), [(product["id"], 1)])
    assert stock(client, product["id"]) == 3


def test_persistent_deadlocks_end_in_503_not_500(client, admin, app, monkeypatch):
    import psycopg2.errors

    product = create_product(client, admin)
    user = new_user(client)
    attempts = []

    def always_deadlocked(*args):
        attempts.append(1)
        raise psycopg2.errors.DeadlockDetected()

    monkeypatch.setattr(app.deps.orders, "_place_once", always_deadlocked)
    result = order(client, user, [(product["id"], 1)])
    assert result.status_code == 503 and result.json["error"]["code"] == "unavailable"
    assert result.headers["retry-after"] == "1"
    assert len(attempts) == 3


def test_an_order_total_beyond_storage_is_422(client, admin):
    # Two lines of 100 x 9,999,999,999.99 exceed numeric(14,2).
    first, second = (create_product(client, admin, price="9999999999.99", stock=10_000)
                     for _ in range(2))
    user = new_user(client)
    result = order(client, user, [(first["id"], 100), (second["id"], 100)])
    assert result.status_code == 422, result.text
    assert stock(client, first["id"]) == stock(client, second["id"]) == 10_000
