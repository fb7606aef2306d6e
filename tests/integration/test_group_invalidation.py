"""Orders share invalidation rounds, and none answers before its own (app/coalescing.py).

Real Postgres and memcached, one app, orders placed from concurrent greenlets;
the first round is held inside its work (at the replica mark, its first
step) so that the others must arrive while it runs.
"""

from dataclasses import replace

import falcon.testing
import gevent
import gevent.event
import pytest

from app.factory import create_app
from tests.support.api import new_user
from tests.support.catalog import create_product, price
from tests.support.metrics import CountingMetrics

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


@pytest.fixture
def node(config, db, cache_flushed):
    metrics = CountingMetrics()
    app = create_app(replace(config, rate_limit_per_minute=0), metrics=metrics,
                     configure_logging=False)
    yield falcon.testing.TestClient(app), app, metrics
    app.deps.close()


class HeldMark:
    """Holds the first invalidation round at its replica mark until released.

    Writers wait only so long for a round in progress before starting their
    own (app.coalescing.PATIENCE); tests of the batching make them patient.
    """

    def __init__(self, catalog):
        self.real = catalog.replicas.wrote
        self.reached = gevent.event.Event()
        self.released = gevent.event.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls == 1:
            self.reached.set()
            assert self.released.wait(10), "never released"
        return self.real()


def order(client, user, product_id):
    result = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product_id, "quantity": 1}], "shipping_address": ADDRESS})
    assert result.status_code == 201, result.text
    return result


def stock(client, product_id):
    return client.simulate_get(f"/v1/products/{product_id}").json["stock"]


def test_orders_placed_during_a_round_share_the_next_one_and_see_their_stock(
        node, db, monkeypatch):
    client, app, metrics = node
    admin = new_user(client, "admin", db)
    user = new_user(client)
    products = [create_product(client, admin, stock=10)["id"] for _ in range(6)]
    listed = client.simulate_get("/v1/products", query_string="limit=50").json["items"]
    assert {p["id"]: p["stock"] for p in listed if p["id"] in products} == dict.fromkeys(
        products, 10)
    for product_id in products:
        assert stock(client, product_id) == 10  # every page cached
    held = HeldMark(app.deps.catalog)
    monkeypatch.setattr(app.deps.catalog.replicas, "wrote", held)
    monkeypatch.setattr(app.deps.catalog._invalidation, "patience", 30.0)  # see HeldMark
    rounds_before = metrics["catalog.invalidation.rounds"]

    first = gevent.spawn(order, client, user, products[0])
    assert held.reached.wait(10)
    others = [gevent.spawn(order, client, user, p) for p in products[1:]]
    deadline = gevent.Timeout(10)
    with deadline:
        while metrics["catalog.invalidation.joined"] < len(others):
            gevent.sleep(0.01)  # each has committed and is waiting for a round
    assert not any(g.ready() for g in [first, *others])  # no answer before its round
    held.released.set()
    gevent.joinall([first, *others], timeout=10, raise_error=True)

    # One round for the first order, one for the five that committed during it.
    assert metrics["catalog.invalidation.rounds"] - rounds_before == 2
    for product_id in products:
        assert stock(client, product_id) == 9, product_id  # the next read, same node
    listed = client.simulate_get("/v1/products", query_string="limit=50").json["items"]
    assert {p["id"]: p["stock"] for p in listed if p["id"] in products} == dict.fromkeys(
        products, 9)


def test_an_order_committed_during_a_round_is_invalidated_by_a_later_one(node, db, monkeypatch):
    client, app, metrics = node
    admin = new_user(client, "admin", db)
    user = new_user(client)
    early, late = (create_product(client, admin, stock=10)["id"] for _ in range(2))
    assert stock(client, late) == 10  # cached
    held = HeldMark(app.deps.catalog)
    monkeypatch.setattr(app.deps.catalog.replicas, "wrote", held)
    monkeypatch.setattr(app.deps.catalog._invalidation, "patience", 30.0)  # see HeldMark

    first = gevent.spawn(order, client, user, early)
    assert held.reached.wait(10)
    second = gevent.spawn(order, client, user, late)
    with gevent.Timeout(10):
        while metrics["catalog.invalidation.joined"] < 1:
            gevent.sleep(0.01)
    assert not second.ready()
    # The round in progress took its keys before the second order committed:
    # the second answers after a round of its own, and its page shows it.
    held.released.set()
    gevent.joinall([first, second], timeout=10, raise_error=True)
    assert held.calls == 2
    assert stock(client, late) == 9


def test_a_retry_with_the_same_key_answers_only_after_the_first_orders_stock_is_visible(
        node, db, monkeypatch):
    client, app, metrics = node
    admin = new_user(client, "admin", db)
    user = new_user(client)
    product_id = create_product(client, admin, stock=10)["id"]
    assert stock(client, product_id) == 10  # cached
    held = HeldMark(app.deps.catalog)
    monkeypatch.setattr(app.deps.catalog.replicas, "wrote", held)
    monkeypatch.setattr(app.deps.catalog._invalidation, "patience", 30.0)  # see HeldMark
    keyed = {**user["headers"], "Idempotency-Key": "retry-1"}
    body = {"items": [{"product_id": product_id, "quantity": 1}], "shipping_address": ADDRESS}

    first = gevent.spawn(client.simulate_post, "/v1/orders", headers=keyed, json=body)
    assert held.reached.wait(10)  # committed, invalidating
    retry = gevent.spawn(client.simulate_post, "/v1/orders", headers=keyed, json=body)
    with gevent.Timeout(10):
        while metrics["orders.idempotent_replay"] < 1:
            gevent.sleep(0.01)
    gevent.sleep(0.05)
    assert not retry.ready()  # the stored answer waits for the invalidation
    held.released.set()
    gevent.joinall([first, retry], timeout=10, raise_error=True)
    assert retry.value.status_code == 201 and retry.value.json == first.value.json
    assert stock(client, product_id) == 9


def test_a_round_that_lost_an_invalidation_does_not_hold_back_the_next_rounds_deletes(
        db, memcached_nodes, instances, monkeypatch):
    """Two memcached nodes, one frozen: A's delete there is lost (new epoch, adopted
    within a poll interval, which A waits out before answering). B's key is on the
    healthy node: its delete must not wait for A's adoption as well."""
    import time

    from app.cache import key
    from tests.support.catalog import patch_price
    from tests.support.memcached import stopped

    frozen, healthy = memcached_nodes(2)
    ((client, app),) = instances([frozen, healthy], 1)
    cache, catalog, metrics = app.deps.cache, app.deps.catalog, app.deps.metrics
    admin = new_user(client, "admin", db)
    owner = {f"127.0.0.1:{n.port}": n for n in (frozen, healthy)}
    on = {frozen: [], healthy: []}
    while not (on[frozen] and on[healthy]):
        product_id = create_product(client, admin)["id"]
        on[owner[cache.owner(key("product", product_id))]].append(product_id)
    a_id, b_id = on[frozen][0], on[healthy][0]
    rounds, real_invalidate = [], cache.invalidate

    def invalidate(keys, **kwargs):
        adopted = real_invalidate(keys, **kwargs)
        rounds.append((list(keys), time.monotonic(), adopted))
        return adopted

    monkeypatch.setattr(cache, "invalidate", invalidate)
    held = HeldMark(catalog)
    monkeypatch.setattr(catalog.replicas, "wrote", held)
    # Patient: B's round comes after A's (without patience it would start
    # beside A's slow round, which hides what this test checks).
    monkeypatch.setattr(catalog._invalidation, "patience", 30.0)
    answered = {}

    def write(name, product_id, new_price):
        patch_price(client, admin, product_id, new_price)
        answered[name] = time.monotonic()

    with stopped(frozen):
        a = gevent.spawn(write, "a", a_id, "2.00")
        assert held.reached.wait(10)
        b = gevent.spawn(write, "b", b_id, "3.00")
        with gevent.Timeout(10):
            while metrics["catalog.invalidation.joined"] < 1:
                gevent.sleep(0.01)
        held.released.set()
        gevent.joinall([a, b], timeout=20, raise_error=True)

    assert metrics["cache.invalidation_lost"] >= 1  # A's delete did not reach its node
    by_keys = {tuple(keys): (done, adopted) for keys, done, adopted in rounds}
    assert set(by_keys) == {(key("product", a_id),), (key("product", b_id),)}
    a_adopted = by_keys[(key("product", a_id),)][1]  # every process has A's node's new epoch
    assert a_adopted > 0
    assert by_keys[(key("product", b_id),)][0] < a_adopted  # B's delete did not wait for it
    assert answered["a"] >= a_adopted  # A's answer did
    assert price(client, b_id) == "3.00" and price(client, a_id) == "2.00"
