"""Forced interleavings of cache fills and writes (real memcached, real Postgres).

Each test pauses a reader *after* it loaded the old row, lets a writer commit
and invalidate, resumes the reader, and checks that the next read sees the
write: the reader's late store must not win over the invalidation.
"""

import gevent
import pytest

from app.cache import Cache
from app.metrics import NullMetrics
from app.readthrough import ReadThrough
from tests.support.api import new_user
from tests.support.catalog import create_product
from tests.support.greenlets import Pause, finish, start_reader

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def cache(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)], timeout=1)
    yield cache
    cache.close()


# -- the read-through layer -----------------------------------------------------


def test_a_cold_fill_that_loaded_before_an_invalidation_is_not_stored(cache):
    reads = ReadThrough(cache, NullMetrics())
    row, pause = [b"old"], Pause()

    def slow_load():
        value = row[0]
        pause()
        return value

    reader = gevent.spawn(reads.get, "k:cold", slow_load, 60, 30, "t")
    pause.wait_reached()
    row[0] = b"new"  # the writer commits...
    reads.forget("k:cold")  # ...and invalidates
    pause.released.set()
    assert reader.get(timeout=10) == b"old"  # it overlapped the write: either is fine
    assert reads.get("k:cold", lambda: row[0], 60, 30, "t") == b"new"


def test_a_stale_refresh_that_loaded_before_an_invalidation_is_not_stored(cache):
    clock = Clock()
    reads = ReadThrough(cache, NullMetrics(), clock=clock)
    row, pause = [b"v1"], Pause()
    assert reads.get("k:swr", lambda: row[0], 10, 5, "t") == b"v1"
    clock.now += 11  # past the soft expiry: the next read refreshes

    def slow_reload():
        value = row[0]
        pause()
        return value

    row[0] = b"v2"
    refresher = gevent.spawn(reads.get, "k:swr", slow_reload, 10, 5, "t")
    pause.wait_reached()
    row[0] = b"v3"
    reads.forget("k:swr")
    pause.released.set()
    refresher.get(timeout=10)
    assert reads.get("k:swr", lambda: row[0], 10, 5, "t") == b"v3"


def test_a_late_refresh_does_not_overwrite_a_newer_fill(cache):
    clock = Clock()
    reads = ReadThrough(cache, NullMetrics(), clock=clock)
    row, pause = [b"v1"], Pause()
    assert reads.get("k:late", lambda: row[0], 10, 5, "t") == b"v1"
    clock.now += 11

    def slow_reload():
        value = row[0]
        pause()
        return value

    refresher = gevent.spawn(reads.get, "k:late", slow_reload, 10, 5, "t")
    pause.wait_reached()
    row[0] = b"v2"
    reads.forget("k:late")
    assert reads.get("k:late", lambda: row[0], 10, 5, "t") == b"v2"  # another reader fills
    pause.released.set()
    refresher.get(timeout=10)
    assert reads.get("k:late", lambda: b"not cached", 10, 5, "t") == b"v2"


# -- the catalog against Postgres -----------------------------------------------


def place_order(client, user, product_id, quantity):
    result = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product_id, "quantity": quantity}],
        "shipping_address": ADDRESS})
    assert result.status_code == 201, result.text
    return result.json


def test_product_read_that_loaded_before_an_update_does_not_cache_the_old_row(
        client, admin, paused_query):
    product = create_product(client, admin, price="5.00")
    url = f"/v1/products/{product['id']}"
    pause = paused_query("product")
    start_reader(pause, client.simulate_get, url)
    patched = client.simulate_patch(url, json={"price": "6.00"}, headers=admin["headers"])
    assert patched.status_code == 200, patched.text
    assert finish(pause).json["price"] == "5.00"  # began before the write
    assert client.simulate_get(url).json["price"] == "6.00"


def test_product_read_that_loaded_before_an_order_does_not_cache_the_old_stock(
        client, admin, paused_query):
    product = create_product(client, admin, stock=10)
    url = f"/v1/products/{product['id']}"
    user = new_user(client)
    pause = paused_query("product")
    start_reader(pause, client.simulate_get, url)
    place_order(client, user, product["id"], 2)
    assert finish(pause).json["stock"] == 10
    assert client.simulate_get(url).json["stock"] == 8


def test_lists_show_stock_moved_by_orders_on_the_next_read(client, admin):
    product = create_product(client, admin, name="Counted Crate", stock=10)
    query = "q=counted crate"
    assert client.simulate_get("/v1/products", query_string=query).json["items"][0][
        "stock"] == 10  # cached now
    user = new_user(client)
    order = place_order(client, user, product["id"], 3)
    listed = client.simulate_get("/v1/products", query_string=query).json["items"]
    assert [p["stock"] for p in listed] == [7]
    cancelled = client.simulate_post(f"/v1/orders/{order['id']}/cancel",
                                     headers=user["headers"])
    assert cancelled.status_code == 200, cancelled.text
    listed = client.simulate_get("/v1/products", query_string=query).json["items"]
    assert [p["stock"] for p in listed] == [10]


def test_list_read_that_loaded_before_an_order_does_not_cache_the_old_stock(
        client, admin, paused_query):
    product = create_product(client, admin, name="Paused Pallet", stock=10)
    query = "q=paused pallet"
    user = new_user(client)
    pause = paused_query("search")
    start_reader(pause, client.simulate_get, "/v1/products", query_string=query)
    place_order(client, user, product["id"], 4)
    assert [p["stock"] for p in finish(pause).json["items"]] == [10]
    listed = client.simulate_get("/v1/products", query_string=query).json["items"]
    assert [p["stock"] for p in listed] == [6]
