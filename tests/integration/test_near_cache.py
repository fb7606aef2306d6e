"""The in-process near cache (app/nearcache.py) against the catalog contract.

Real gunicorn processes share Postgres and memcached: writes on one worker
must be seen at once by the sibling workers of its node (the shared slot
table) and within 1 s by another node (the near entries' ttl), and a reader
racing a writer must not keep the old value near.
"""

import re
import time

import pytest

from tests.support.api import PASSWORD, unique_email
from tests.support.catalog import create_product, patch_price, price
from tests.support.greenlets import Pause, finish, green_wait_until, start_reader
from tests.support.http import request
from tests.support.memcached import stopped

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
VISIBLE_WITHIN = 1.0


def live_user(url, db, role="user", ip="10.9.0.1"):
    email = unique_email(role)
    assert request(url + "/v1/auth/register", "POST",
                   {"email": email, "password": PASSWORD, "name": "N"}).status == 201
    if role == "admin":
        with db.cursor() as cur:
            cur.execute("UPDATE users SET role = 'admin' WHERE email = %s", (email,))
    login = request(url + "/v1/auth/login", "POST", {"email": email, "password": PASSWORD},
                    headers={"X-Real-IP": ip})
    assert login.status == 200, login.body
    return {"Authorization": "Bearer " + login.json["access_token"]}


def insert_product(db, price="5.00", stock=100):
    with db.cursor() as cur:
        cur.execute("INSERT INTO products (sku, name, price, stock) VALUES (%s, 'Near', %s, %s)"
                    " RETURNING id::text", (f"NEAR-{time.monotonic_ns()}", price, stock))
        return cur.fetchone()[0]


def read(url, product_id):
    result = request(f"{url}/v1/products/{product_id}")  # a new connection each time
    assert result.status == 200, result.body
    return result.json


def served_pids(server, deadline=3.0):
    """Worker pids in the request log that served a product read."""
    end = time.monotonic() + deadline
    while True:
        pids = set(re.findall(r'"pid":(\d+),[^\n]*"route":"/v1/products/\{product_id\}"',
                              server.log()))
        if len(pids) >= 2 or time.monotonic() > end:
            return pids
        time.sleep(0.1)


@pytest.fixture
def two_workers(live_server_factory):
    return live_server_factory(PEREGRINE_WORKERS="2", PEREGRINE_RATE_LIMIT_PER_MINUTE="0",
                               PEREGRINE_LOG_LEVEL="info")


def warm(url, product_id, field, expected, seconds=0.3):
    """Many reads on new connections (both workers) right before the write."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert read(url, product_id)[field] == expected


def test_a_price_change_is_seen_at_once_by_every_worker_of_the_node(two_workers, db):
    url = two_workers.url
    admin_headers = live_user(url, db, "admin")
    product_id = insert_product(db, price="5.00")
    for round_, new_price in enumerate(("6.00", "7.00", "8.00")):
        old = read(url, product_id)["price"]
        warm(url, product_id, "price", old)
        patched = request(f"{url}/v1/products/{product_id}", "PATCH", {"price": new_price},
                          headers=admin_headers)
        assert patched.status == 200, patched.body
        prices = [read(url, product_id)["price"] for _ in range(50)]
        assert prices == [new_price] * 50, (round_, prices)
    assert len(served_pids(two_workers)) >= 2, "the reads never reached both workers"


def test_stock_taken_by_an_order_is_seen_at_once_by_every_worker_of_the_node(two_workers, db):
    url = two_workers.url
    buyer = live_user(url, db, ip="10.9.0.2")
    product_id = insert_product(db, stock=100)
    for quantity in (1, 2, 3):
        stock = read(url, product_id)["stock"]
        warm(url, product_id, "stock", stock)
        placed = request(f"{url}/v1/orders", "POST", {
            "items": [{"product_id": product_id, "quantity": quantity}],
            "shipping_address": ADDRESS}, headers=buyer)
        assert placed.status == 201, placed.body
        stocks = [read(url, product_id)["stock"] for _ in range(50)]
        assert stocks == [stock - quantity] * 50
        listed = request(f"{url}/v1/products?q=near")
        assert [p["stock"] for p in listed.json["items"]] == [stock - quantity]
    assert len(served_pids(two_workers)) >= 2, "the reads never reached both workers"


def test_another_node_sees_a_write_within_one_second(live_server_factory, db):
    # The ttl alone: B does not listen, so its entry is not failed by A's announcement
    # (tests/integration/test_near_listener.py tests the nodes that hear each other).
    env = dict(PEREGRINE_RATE_LIMIT_PER_MINUTE="0", PEREGRINE_NEAR_CACHE_LISTENED_TTL="0")
    node_a, node_b = live_server_factory(**env), live_server_factory(**env)
    admin_headers = live_user(node_a.url, db, "admin")
    product_id = insert_product(db, price="5.00")
    warm(node_b.url, product_id, "price", "5.00")
    time.sleep(0.6)  # B's near entries expire: the next read makes a fresh one
    assert read(node_b.url, product_id)["price"] == "5.00"
    near_since = time.monotonic()
    write_started = time.monotonic()
    patched = request(f"{node_a.url}/v1/products/{product_id}", "PATCH", {"price": "9.00"},
                      headers=admin_headers)
    assert patched.status == 200, patched.body
    assert read(node_a.url, product_id)["price"] == "9.00"  # the writer's node: at once
    first = read(node_b.url, product_id)["price"]
    if time.monotonic() - near_since < 0.4:
        # B answered from its near entry (memcached already has 9.00): the
        # test exercises the near cache, not only memcached.
        assert first == "5.00"
    while True:
        price = read(node_b.url, product_id)["price"]
        elapsed = time.monotonic() - write_started
        if price == "9.00":
            break
        assert price == "5.00"
        assert elapsed < VISIBLE_WITHIN, "node B still serves the old price"
        time.sleep(0.01)
    # ...and never the old one again.
    assert all(read(node_b.url, product_id)["price"] == "9.00" for _ in range(20))


def test_a_reader_that_loaded_before_an_update_keeps_nothing_near(client, app, admin,
                                                                  paused_query):
    near = app.deps.catalog._near
    assert near is not None, "the near cache is on by default"
    product = create_product(client, admin, price="5.00")
    url = f"/v1/products/{product['id']}"
    pause = paused_query("product")
    start_reader(pause, client.simulate_get, url)  # loaded 5.00, now paused
    patched = client.simulate_patch(url, json={"price": "6.00"}, headers=admin["headers"])
    assert patched.status_code == 200, patched.text
    assert finish(pause).json["price"] == "5.00"  # it began before the write
    assert all(b'"5.00"' not in entry[0] for entry in near._entries.values())
    assert client.simulate_get(url).json["price"] == "6.00"
    assert client.simulate_get(url).json["price"] == "6.00"  # now a near hit
    assert any(b'"6.00"' in entry[0] for entry in near._entries.values())


def test_a_reader_that_read_the_generation_before_an_order_keeps_nothing_near(
        client, app, admin, monkeypatch):
    """The generation key: read (old) by a reader, bumped by an order, stored late."""
    import gevent

    from app.catalog import GENERATION_KEY
    from tests.integration.test_cache_races import place_order
    from tests.support.api import new_user

    near = app.deps.catalog._near
    product = create_product(client, admin, name="Near Pallet", stock=10)
    query = "q=near pallet"
    assert client.simulate_get("/v1/products", query_string=query).json["items"][0][
        "stock"] == 10  # the generation exists in memcached (and near, and the page)
    near._entries.clear()  # a worker without near entries (or after their ttl)
    cache, pause = app.deps.cache, Pause()
    real_get = cache.get

    def get(k):
        value = real_get(k)
        if k == GENERATION_KEY and gevent.getcurrent() is pause.reader:
            pause()  # read the old generation; the order commits and bumps now
        return value

    monkeypatch.setattr(cache, "get", get)
    user = new_user(client)
    start_reader(pause, client.simulate_get, "/v1/products", query_string=query)
    place_order(client, user, product["id"], 4)
    assert [p["stock"] for p in finish(pause).json["items"]] == [10]  # overlapped the write
    for _ in range(3):  # a memcached read, then near hits
        listed = client.simulate_get("/v1/products", query_string=query).json["items"]
        assert [p["stock"] for p in listed] == [6]
    assert GENERATION_KEY in near._entries


def test_a_lost_invalidation_fails_another_nodes_near_entries_by_the_epoch(
        db, memcached_nodes, instances):
    """The delete times out (memcached frozen): the epoch, not the ttl, must drop B's entry."""
    from app.nearcache import NearCache, Slots
    from tests.support.api import new_user

    (node,) = memcached_nodes(1)
    (writer, _), (other, other_app) = instances([node])
    # Another host: its own slot table. A 5 s ttl, which alone would break the
    # contract, shows that the epoch change is what fails the entry.
    other_app.deps.catalog.use_near_cache(
        NearCache(5.0, slots=Slots(1024), tag=other_app.deps.cache.tag))
    admin = new_user(writer, "admin", db)
    product = create_product(writer, admin, price="10.00")
    assert price(other, product["id"]) == "10.00"
    assert price(other, product["id"]) == "10.00"
    assert other_app.deps.metrics["cache.product.near_hit"] == 1  # B holds it near

    started = time.monotonic()
    with stopped(node):
        patch_price(writer, admin, product["id"], "20.00")
    green_wait_until(lambda: price(other, product["id"]) == "20.00",
                     VISIBLE_WITHIN - (time.monotonic() - started))
    for _ in range(3):
        assert price(other, product["id"]) == "20.00"



def test_a_read_joining_another_of_the_same_key_takes_its_value_without_memcached(
        client, app, admin, paused_query, monkeypatch):
    import gevent

    product = create_product(client, admin, price="5.00")
    url = f"/v1/products/{product['id']}"
    app.deps.catalog._near._entries.clear()
    cache = app.deps.cache
    reads, real_gets = [], cache.gets
    monkeypatch.setattr(cache, "gets", lambda k: reads.append(k) or real_gets(k))
    pause = paused_query("product")
    start_reader(pause, client.simulate_get, url)  # a miss: loading from Postgres, paused
    before = len(reads)
    joiner = gevent.spawn(client.simulate_get, url)
    gevent.sleep(0.05)  # the second read is waiting on the first
    assert finish(pause).json["price"] == "5.00"
    assert joiner.get(timeout=5).json["price"] == "5.00"
    assert len(reads) == before, "the joining read asked memcached itself"


def test_a_read_that_joins_one_begun_before_a_write_does_not_take_the_old_value(
        client, app, admin, paused_query):
    """Forced interleaving: A loads the old row and pauses; the write answers; B
    starts after it, finds A's read of the key in flight and joins it. A's value
    began before the write: B must read the new one itself."""
    import gevent

    product = create_product(client, admin, price="5.00")
    url = f"/v1/products/{product['id']}"
    app.deps.catalog._near._entries.clear()
    pause = paused_query("product")
    start_reader(pause, client.simulate_get, url)  # A: loaded 5.00, paused
    patched = client.simulate_patch(url, json={"price": "6.00"}, headers=admin["headers"])
    assert patched.status_code == 200, patched.text
    joiner = gevent.spawn(client.simulate_get, url)  # B: after the write answered
    gevent.sleep(0.05)
    assert finish(pause).json["price"] == "5.00"  # A began before the write
    assert joiner.get(timeout=5).json["price"] == "6.00"
