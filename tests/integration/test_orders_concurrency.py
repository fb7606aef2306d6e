"""Orders under real concurrency: a gunicorn gevent worker and many clients."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support.api import PASSWORD, unique_email
from tests.support.http import request

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


def make_users(url, count):
    users = []
    for index in range(count):
        email = unique_email("buyer")
        assert request(url + "/v1/auth/register", "POST",
                       {"email": email, "password": PASSWORD, "name": "B"}).status == 201
        login = request(url + "/v1/auth/login", "POST", {"email": email, "password": PASSWORD},
                        headers={"X-Real-IP": f"10.1.0.{index + 1}"})
        users.append({"Authorization": "Bearer " + login.json["access_token"]})
    return users


def insert_product(db, stock):
    with db.cursor() as cur:
        cur.execute("INSERT INTO products (sku, name, price, stock) VALUES (%s, 'Hot', 5, %s)"
                    " RETURNING id::text", (f"HOT-{random.random()}", stock))
        return cur.fetchone()[0]


def test_two_hundred_orders_for_fifty_units(live_server_factory, db):
    server = live_server_factory(PEREGRINE_DB_POOL_TIMEOUT="20", PEREGRINE_DB_POOL_SIZE="10")
    product_id = insert_product(db, 50)
    users = make_users(server.url, 20)
    start = threading.Barrier(50)

    def place(index):
        if index < 50:
            start.wait()
        result = request(server.url + "/v1/orders", "POST", {
            "items": [{"product_id": product_id, "quantity": 1}],
            "shipping_address": ADDRESS}, headers=users[index % len(users)], timeout=60)
        return result.status, result.json

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(place, range(200)))
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 50, statuses
    assert statuses.count(409) == 150
    assert all(body["error"]["code"] == "out_of_stock" for status, body in results
               if status == 409)
    with db.cursor() as cur:
        cur.execute("SELECT stock FROM products WHERE id = %s", (product_id,))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT coalesce(sum(quantity), 0) FROM order_items WHERE product_id = %s",
                    (product_id,))
        assert cur.fetchone()[0] == 50
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] == 50


def test_opposite_line_orders_never_fail_with_500(live_server_factory, db):
    server = live_server_factory(PEREGRINE_DB_POOL_TIMEOUT="20", PEREGRINE_DB_POOL_SIZE="10")
    first, second = insert_product(db, 1000), insert_product(db, 1000)
    users = make_users(server.url, 10)

    def place(index):
        lines = [first, second] if index % 2 else [second, first]
        return request(server.url + "/v1/orders", "POST", {
            "items": [{"product_id": p, "quantity": 1} for p in lines],
            "shipping_address": ADDRESS}, headers=users[index % len(users)], timeout=60).status

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(place, range(100)))
    assert statuses == [201] * 100
    with db.cursor() as cur:
        cur.execute("SELECT stock FROM products WHERE id IN (%s, %s)", (first, second))
        assert [row[0] for row in cur.fetchall()] == [900, 900]


def test_concurrent_retries_with_one_key_make_one_order(live_server_factory, db):
    server = live_server_factory(PEREGRINE_DB_POOL_TIMEOUT="20")
    product_id = insert_product(db, 100)
    user = make_users(server.url, 1)[0]
    start = threading.Barrier(20)

    def place(_):
        start.wait()
        result = request(server.url + "/v1/orders", "POST", {
            "items": [{"product_id": product_id, "quantity": 3}], "shipping_address": ADDRESS},
            headers={**user, "Idempotency-Key": "one-key"}, timeout=60)
        return result.status, result.body

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(place, range(20)))
    bodies = {body for status, body in results if status == 201}
    assert len(bodies) == 1, "replays must return the first response"
    assert all(status in (201, 409) for status, _ in results)
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT stock FROM products WHERE id = %s", (product_id,))
        assert cur.fetchone()[0] == 97
