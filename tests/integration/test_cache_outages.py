"""Writes while a memcached node is unresponsive (SIGSTOP, not dead), one or several nodes.

Each test runs two app instances on the same Postgres and memcached: the
writer, and another one standing in for a different node of the service. A
write made while a memcached node is stopped must be served by the writer at
once and by the other instance within the contract's second once the node is
back, never the value from before the write.
"""

import time

import gevent
import pytest
from pymemcache.client.base import Client

from app.cache import Cache, key
from tests.support.api import new_user
from tests.support.catalog import create_product, listed_prices, patch_price, price
from tests.support.greenlets import green_wait_until
from tests.support.http import request
from tests.support.memcached import stopped
from tests.support.processes import free_port

VISIBLE_WITHIN = 1.0  # the contract's bound for other nodes


def trip_breaker(app, product_id):
    """Fail calls until the cache skips the stopped node, as a busy service would have."""
    for _ in range(20):
        if not app.deps.cache.available:
            return
        assert app.deps.cache.get(key("product", product_id)) is None
    raise AssertionError("the breaker never opened")


def epoch_of(db, server):
    with db.cursor() as cur:
        cur.execute("SELECT epoch FROM cache_epochs WHERE node = %s", (f"127.0.0.1:{server.port}",))
        return cur.fetchone()[0]


@pytest.mark.parametrize("breaker_open", [True, False], ids=["skipped", "timed-out"])
def test_a_write_while_memcached_is_stopped_is_not_served_stale_after_it_resumes(
        db, memcached_nodes, instances, breaker_open):
    (node,) = memcached_nodes(1)
    (writer, writer_app), (other, other_app) = instances([node])
    admin = new_user(writer, "admin", db)
    product = create_product(writer, admin, name="Frozen Fan", price="10.00")
    query = "q=frozen fan"
    for client in (writer, other):  # both have it cached now
        assert price(client, product["id"]) == "10.00"
        assert listed_prices(client, query) == {product["id"]: "10.00"}
    assert other_app.deps.metrics["cache.product.hit"] == 1  # the other one reads the cache

    epoch = epoch_of(db, node)
    with stopped(node):
        if breaker_open:  # the invalidation is skipped, never sent
            trip_breaker(writer_app, product["id"])
            assert price(writer, product["id"]) == "10.00"  # from Postgres
        # Else it times out. memcached may still apply a delete it received
        # once it resumes, but nothing says it will (or that a late fill will
        # not come after it): either way the node's epoch must move.
        patch_price(writer, admin, product["id"], "20.00")
    resumed = time.monotonic()
    assert epoch_of(db, node) > epoch

    assert price(writer, product["id"]) == "20.00"
    assert listed_prices(writer, query) == {product["id"]: "20.00"}
    writer_app.deps.cache.ping()  # closes its breaker: the node is used again
    assert writer_app.deps.cache.available
    assert price(writer, product["id"]) == "20.00"
    assert listed_prices(writer, query) == {product["id"]: "20.00"}

    green_wait_until(lambda: price(other, product["id"]) == "20.00",
                     VISIBLE_WITHIN - (time.monotonic() - resumed))
    green_wait_until(lambda: listed_prices(other, query) == {product["id"]: "20.00"},
                     VISIBLE_WITHIN - (time.monotonic() - resumed))
    for _ in range(3):
        assert price(other, product["id"]) == "20.00"
        gevent.sleep(0.05)  # let its poller run: nothing brings the old value back
    assert price(writer, product["id"]) == "20.00"


def test_one_stopped_node_of_three_costs_only_its_own_keys(db, memcached_nodes, instances):
    nodes = memcached_nodes(3)
    sick = f"127.0.0.1:{nodes[0].port}"
    (writer, writer_app), (other, other_app) = instances(nodes)
    admin = new_user(writer, "admin", db)
    on_sick, on_healthy = [], []
    for index in range(60):
        product = create_product(writer, admin, name=f"Node Lamp {index}", price="10.00")
        owner = writer_app.deps.cache.owner(key("product", product["id"]))
        (on_sick if owner == sick else on_healthy).append(product["id"])
        if len(on_sick) >= 2 and len(on_healthy) >= 3:
            break
    assert len(on_sick) >= 2 and len(on_healthy) >= 3
    query = "q=node lamp&limit=100"
    for client in (writer, other):
        for product_id in on_sick + on_healthy:
            assert price(client, product_id) == "10.00"
        listed_prices(client, query)

    with stopped(nodes[0]):
        trip_breaker(writer_app, on_sick[0])
        # The other nodes' keys are still served from the cache.
        hits, misses = writer_app.deps.metrics["cache.product.hit"], writer_app.deps.metrics[
            "cache.product.miss"]
        for product_id in on_healthy:
            assert price(writer, product_id) == "10.00"
        assert writer_app.deps.metrics["cache.product.hit"] - hits == len(on_healthy)
        assert writer_app.deps.metrics["cache.product.miss"] == misses
        # The sick node's keys are plain misses served from Postgres, not moved.
        assert price(writer, on_sick[1]) == "10.00"
        assert writer_app.deps.metrics["cache.product.miss"] == misses + 1
        patch_price(writer, admin, on_sick[0], "30.00")
        patch_price(writer, admin, on_healthy[0], "31.00")
        assert price(writer, on_sick[0]) == "30.00"
        assert price(writer, on_healthy[0]) == "31.00"
    resumed = time.monotonic()

    expected = {on_sick[0]: "30.00", on_healthy[0]: "31.00"}
    writer_app.deps.cache.ping()
    fresh_client, _ = instances(nodes, count=1)[0]  # a node started after the outage
    for client in (writer, fresh_client):
        for product_id, new_price in expected.items():
            assert price(client, product_id) == new_price
    assert price(other, on_healthy[0]) == "31.00"  # its delete reached its node

    def other_is_current():
        listed = listed_prices(other, query)
        return (all(price(other, p) == v for p, v in expected.items())
                and all(listed[p] == v for p, v in expected.items()))

    green_wait_until(other_is_current, VISIBLE_WITHIN - (time.monotonic() - resumed))
    for client in (writer, fresh_client, other):
        listed = listed_prices(client, query)
        assert {p: listed[p] for p in expected} == expected


def test_a_dead_node_opens_only_its_own_breaker_and_its_keys_are_not_moved(
        memcached, cache_flushed, memcached_nodes):
    (second,) = memcached_nodes(1)
    dead = ("127.0.0.1", free_port())
    live = [("127.0.0.1", memcached.port), ("127.0.0.1", second.port)]
    cache = Cache([*live, dead], connect_timeout=0.05, timeout=0.05, breaker_threshold=2)
    keys = [f"t:moved:{i}" for i in range(60)]
    dead_keys = [k for k in keys if cache.owner(k) == f"127.0.0.1:{dead[1]}"]
    live_keys = [k for k in keys if k not in dead_keys]
    assert dead_keys and live_keys
    for k in keys:
        cache.set(k, b"v", 60)
    assert not cache.available  # the dead node's breaker is open...
    assert all(cache.get(k) == b"v" for k in live_keys)  # ...the others serve
    assert all(cache.get(k) is None for k in dead_keys)
    for server in live:  # and no live node took the dead node's keys
        raw = Client(server)
        assert all(raw.get(k) is None for k in dead_keys)
        raw.close()
    assert cache.ping() is False  # /readyz reports "degraded" while any node is down
    cache.close()
    healthy = Cache(live)
    assert healthy.ping() is True
    healthy.close()


@pytest.mark.slow
def test_two_gunicorn_nodes_agree_after_a_write_during_a_memcached_stop(
        db, memcached_nodes, live_server_factory):
    """The same, across real worker processes: the epoch poller runs in each worker."""
    (node,) = memcached_nodes(1)
    env = {"PEREGRINE_MEMCACHED_SERVERS": f"127.0.0.1:{node.port}",
           "PEREGRINE_RATE_LIMIT_PER_MINUTE": "0"}
    writer, other = live_server_factory(**env), live_server_factory(**env)
    account = {"email": "epochs-admin@example.test", "password": "correct horse battery",
               "name": "Admin"}
    assert request(writer.url + "/v1/auth/register", "POST", account).status == 201
    with db.cursor() as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE email = %s", (account["email"],))
    login = request(writer.url + "/v1/auth/login", "POST",
                    {"email": account["email"], "password": account["password"]})
    headers = {"Authorization": f"Bearer {login.json['access_token']}"}
    created = request(writer.url + "/v1/products", "POST",
                      {"sku": "EPOCH-1", "name": "Live Lamp", "price": "10.00"}, headers)
    assert created.status == 201
    path = f"/v1/products/{created.json['id']}"

    def live_price(server):
        result = request(server.url + path)
        assert result.status == 200
        return result.json["price"]

    assert live_price(writer) == live_price(other) == "10.00"  # cached by both
    with stopped(node):
        for _ in range(3):  # enough failed calls to open the writer's breaker
            assert live_price(writer) == "10.00"
        patched = request(writer.url + path, "PATCH", {"price": "20.00"}, headers)
        assert patched.status == 200
    resumed = time.monotonic()
    assert live_price(writer) == "20.00"
    green_wait_until(lambda: live_price(other) == "20.00",
                     VISIBLE_WITHIN - (time.monotonic() - resumed))
    assert live_price(other) == "20.00"
