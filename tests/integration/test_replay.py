"""Replayed reads (app/replay.py): falcon's own answer, byte for byte, and never an old one.

Real Postgres and memcached. ``reader`` is a node's worker with replay on
(no general rate limit, as behind a load balancer that limits); the
``client`` fixture's app is a sibling worker of the same node (one slot
table), which makes the writes.
"""

import logging
import re
from dataclasses import replace

import falcon
import falcon.testing
import gevent
import pytest

from app import replay
from app.factory import create_app
from tests.integration.test_cache_races import place_order
from tests.support.api import new_user
from tests.support.catalog import create_category, create_product, patch_price
from tests.support.greenlets import Pause, finish, start_reader
from tests.support.metrics import CountingMetrics

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def reader(config, db, cache_flushed):
    metrics = CountingMetrics()
    app = create_app(replace(config, rate_limit_per_minute=0), metrics=metrics,
                     configure_logging=False)
    yield app
    app.deps.close()


class Answer:
    def __init__(self, status, headers, body, replayed):
        self.status, self.headers, self.body, self.replayed = status, headers, body, replayed

    def same_as(self, other) -> bool:
        """Equal but for this server's span id (new for every request)."""
        def normal(headers):
            return [(n, re.sub(r"-[0-9a-f]{16}-", "-<span>-", v) if n == "traceparent" else v)
                    for n, v in headers]
        return (self.status, normal(self.headers), self.body) == (
            other.status, normal(other.headers), other.body)


def answer(app, path, query="", method="GET", headers=None, body=None) -> Answer:
    """Call the app as the worker does; say whether falcon was reached."""
    served = []

    def serve(env, start_response):
        served.append(True)
        return falcon.App.__call__(app, env, start_response)

    env = falcon.testing.create_environ(path=path, query_string=query, method=method,
                                        headers=headers, body=body or b"")
    if body is None:
        env.pop("CONTENT_LENGTH", None)
    got = {}

    def start_response(status, response_headers, exc_info=None):
        got["status"], got["headers"] = status, list(response_headers)

    assert app.replay is not None, "replay is on with a near cache and no general limit"
    data = b"".join(app.replay(env, start_response, serve))
    return Answer(got["status"], got["headers"], data, not served)


@pytest.fixture
def catalog(client, admin):
    create_category(client, admin, slug="garden", name="Garden")
    products = [create_product(client, admin, name=f"Replay Rake {i}", category="garden",
                               price=f"{i + 1}.00") for i in range(3)]
    return products


@pytest.mark.parametrize("target", ["detail", "list", "search", "categories"])
def test_a_repeated_read_is_replayed_as_falcon_answers_it(reader, catalog, target):
    path, query = {
        "detail": (f"/v1/products/{catalog[0]['id']}", ""),
        "list": ("/v1/products", "category=garden&limit=2"),
        "search": ("/v1/products", "q=replay%20rake&sort=-price"),
        "categories": ("/v1/categories", ""),
    }[target]
    headers = {"X-Request-ID": "req-1", "traceparent": TRACEPARENT, "User-Agent": "t"}
    first = answer(reader, path, query, headers=headers)
    assert first.status == "200 OK" and not first.replayed
    near_hit = answer(reader, path, query, headers=headers)  # falcon would answer near
    assert near_hit.replayed
    assert near_hit.same_as(first)
    # falcon itself, from the same near entries, right now:
    reader.replay, kept = None, reader.replay
    try:
        full = answer_without_replay(reader, path, query, headers)
    finally:
        reader.replay = kept
    assert near_hit.same_as(full)
    names = [n.lower() for n, _ in near_hit.headers]
    assert names == ["x-request-id", "traceparent", "etag", "content-type", "content-length"]
    assert dict(near_hit.headers)["x-request-id"] == "req-1"
    assert TRACEPARENT[3:36] in dict(near_hit.headers)["traceparent"]  # the trace goes on


def answer_without_replay(app, path, query, headers) -> Answer:
    env = falcon.testing.create_environ(path=path, query_string=query, headers=headers)
    env.pop("CONTENT_LENGTH", None)
    got = {}

    def start_response(status, response_headers, exc_info=None):
        got["status"], got["headers"] = status, list(response_headers)

    data = b"".join(app(env, start_response))
    return Answer(got["status"], got["headers"], data, False)


def test_a_replay_gets_fresh_ids_when_the_client_sends_none(reader, catalog):
    path = f"/v1/products/{catalog[0]['id']}"
    answer(reader, path)
    one, two = answer(reader, path), answer(reader, path)
    assert one.replayed and two.replayed
    ids = [dict(a.headers)["x-request-id"] for a in (one, two)]
    assert ids[0] != ids[1] and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    bad = answer(reader, path, headers={"X-Request-ID": "no spaces allowed"})
    assert bad.replayed and dict(bad.headers)["x-request-id"] != "no spaces allowed"


def test_a_write_by_a_sibling_worker_is_never_followed_by_an_old_replay(
        reader, client, admin, catalog):
    product = catalog[0]
    path = f"/v1/products/{product['id']}"
    for new_price in ("7.00", "8.00", "9.00"):
        answer(reader, path)
        assert answer(reader, path).replayed  # recorded and replayed before the write
        patch_price(client, admin, product["id"], new_price)
        after = [answer(reader, path) for _ in range(3)]
        assert all(b'"price":"%s"' % new_price.encode() in a.body for a in after)
        assert after[-1].replayed  # and replayed again, with the new body


def test_an_order_on_a_sibling_worker_is_seen_by_the_next_replayed_list(
        reader, client, admin, catalog):
    query = "category=garden&limit=20"
    answer(reader, "/v1/products", query)
    assert answer(reader, "/v1/products", query).replayed
    buyer = new_user(client)
    place_order(client, buyer, catalog[1]["id"], 4)  # bumps the catalog generation
    # Another page first: the new generation is near again, while the old
    # page's near entry (under the old generation's key) is still valid.
    answer(reader, "/v1/products", "limit=1")
    listed = answer(reader, "/v1/products", query)
    assert not listed.replayed  # the generation's value no longer matches the record
    stocks = {p["id"]: p["stock"] for p in falcon.testing.Result(
        [listed.body], listed.status, listed.headers).json["items"]}
    assert stocks[catalog[1]["id"]] == 6
    assert answer(reader, "/v1/products", query).replayed


def test_a_read_that_loaded_before_a_write_is_not_replayed_afterwards(
        reader, client, admin, catalog, paused_query):
    """Forced interleaving: the record is made by a read that overlapped the write."""
    product = catalog[0]
    path = f"/v1/products/{product['id']}"
    reader.deps.catalog.near._entries.clear()
    pause = paused_query("product")
    start_reader(pause, answer, reader, path)  # loaded the old row, now paused
    patch_price(client, admin, product["id"], "42.00")
    old = finish(pause)
    assert b'"price":"1.00"' in old.body and not old.replayed  # it began before the write
    again = answer(reader, path)
    assert b'"price":"42.00"' in again.body and not again.replayed
    assert b'"price":"42.00"' in answer(reader, path).body


@pytest.mark.parametrize("variant", ["if-none-match", "head", "body", "tracestate", "cors"])
def test_requests_falcon_answers_differently_are_not_replayed(reader, catalog, variant, config,
                                                              db):
    path = f"/v1/products/{catalog[0]['id']}"
    app = reader
    if variant == "cors":
        app = create_app(replace(config, rate_limit_per_minute=0,
                                 cors_origins=("https://shop.example",)),
                         configure_logging=False)
    try:
        answer(app, path)
        plain = answer(app, path)
        assert plain.replayed
        etag = dict(plain.headers)["etag"]
        kwargs = {
            "if-none-match": {"headers": {"If-None-Match": etag}},
            "head": {"method": "HEAD"},
            "body": {"body": b"{}", "headers": {"Content-Type": "application/json"}},
            "tracestate": {"headers": {"traceparent": TRACEPARENT, "tracestate": "v=1"}},
            "cors": {"headers": {"Origin": "https://shop.example"}},
        }[variant]
        got = answer(app, path, **kwargs)
        assert not got.replayed
        headers = {n.lower(): v for n, v in got.headers}
        if variant == "if-none-match":
            assert got.status.startswith("304") and got.body == b""
        elif variant == "tracestate":
            assert headers["tracestate"] == "v=1"
        elif variant == "cors":
            assert headers["access-control-allow-origin"] == "https://shop.example"
            assert answer(app, path).replayed  # without an Origin: replayed, Vary kept
            assert ("vary", "Origin") in [(n.lower(), v) for n, v in answer(app, path).headers]
        else:
            assert got.status == "200 OK"
    finally:
        if app is not reader:
            app.deps.close()


def test_a_replay_counts_and_logs_as_the_full_path_does(reader, catalog, caplog):
    path = f"/v1/products/{catalog[0]['id']}"
    metrics = reader.deps.metrics
    answer(reader, path)
    kept = reader.replay
    reader.replay = None
    try:
        before = dict(metrics.counts)
        answer_without_replay(reader, path, "", {})  # falcon, from the near entry
        full = {k: v - before.get(k, 0) for k, v in metrics.counts.items() if v != before.get(k)}
    finally:
        reader.replay = kept
    before = dict(metrics.counts)
    with caplog.at_level(logging.INFO, logger="peregrine.request"):
        assert answer(reader, path).replayed
    replayed = {k: v - before.get(k, 0) for k, v in metrics.counts.items()
                if v != before.get(k)}
    assert replayed == full
    assert replayed["cache.product.near_hit"] == 1
    assert [v for k, v in replayed.items() if k.startswith("http.")] == [1]
    lines = [r for r in caplog.records if r.name == "peregrine.request"]
    assert [(r.method, r.route, r.status, r.user_id) for r in lines] == [
        ("GET", "/v1/products/{product_id}", 200, None)]


def test_no_replay_under_the_general_rate_limit(app, client, catalog):
    """The default limit counts every request in memcached: the full path does it."""
    assert app.deps.config.rate_limit_per_minute > 0
    path = f"/v1/products/{catalog[0]['id']}"
    for _ in range(2):
        assert answer(app, path).replayed is False
    assert client.simulate_get(path).headers["RateLimit-Limit"]


def test_routes_that_are_not_replayable_are_remembered_as_such(reader, catalog):
    for _ in range(3):
        assert not answer(reader, "/healthz").replayed
        assert not answer(reader, "/v1/products/not-a-uuid").replayed  # a 404
    assert ("/healthz", "") in reader.replay._plain
    assert ("/v1/products/not-a-uuid", "") not in reader.replay._records


def test_records_stay_bounded(reader, catalog, monkeypatch):
    monkeypatch.setattr(replay, "MAX_RECORDS", 5)
    for limit in range(1, 12):
        answer(reader, "/v1/products", f"limit={limit}")
    assert len(reader.replay._records) == 5
    long_query = "q=" + "x" * replay.MAX_TARGET
    for _ in range(2):
        assert not answer(reader, "/v1/products", long_query).replayed
    assert ("/v1/products", long_query) not in reader.replay._records


def test_a_replay_whose_answer_cannot_go_out_is_still_logged_once_and_ends_its_trace(
        reader, catalog, caplog):
    from app import tracing

    path = f"/v1/products/{catalog[0]['id']}"
    answer(reader, path)
    env = falcon.testing.create_environ(path=path)
    env.pop("CONTENT_LENGTH", None)

    def refused(status, headers, exc_info=None):
        raise OSError("the client went away")

    with caplog.at_level(logging.INFO, logger="peregrine.request"):
        with pytest.raises(OSError):
            reader.replay(env, refused, pytest.fail)  # never falcon: a replay
    lines = [r for r in caplog.records if r.name == "peregrine.request"]
    assert [(r.route, r.status) for r in lines] == [("/v1/products/{product_id}", 200)]
    assert tracing.current.get() is None


# -- replays whose body is a memcached hit ----------------------------------------


def body_key(app, path, query=""):
    """The key of the entry a recorded target's body is (its last entry)."""
    return app.replay._records[(path, query)][1][-1][0]


def forget_near(app, path, query=""):
    """Drop the body's near entry (as its lifetime ending would); memcached keeps it."""
    app.deps.catalog.near._drop(body_key(app, path, query))


TARGETS = {
    "detail": lambda c: (f"/v1/products/{c[0]['id']}", ""),
    "list": lambda c: ("/v1/products", "category=garden&limit=2"),
    "search": lambda c: ("/v1/products", "q=replay%20rake&sort=-price"),
    "categories": lambda c: ("/v1/categories", ""),
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_repeat_whose_near_entry_is_gone_is_replayed_from_memcached_as_falcon_answers_it(
        reader, catalog, target):
    path, query = TARGETS[target](catalog)
    headers = {"X-Request-ID": "req-2", "traceparent": TRACEPARENT}
    first = answer(reader, path, query, headers=headers)
    assert not first.replayed
    forget_near(reader, path, query)
    fetched = answer(reader, path, query, headers=headers)
    assert fetched.replayed and fetched.same_as(first)
    assert reader.deps.catalog.near.get(body_key(reader, path, query)) == fetched.body  # kept
    forget_near(reader, path, query)
    reader.replay, kept = None, reader.replay
    try:
        full = answer_without_replay(reader, path, query, headers)  # falcon's memcached hit
    finally:
        reader.replay = kept
    assert fetched.same_as(full)


def test_a_replay_from_memcached_counts_and_logs_as_the_full_path_does(reader, catalog, caplog):
    path, query = "/v1/products", "category=garden&limit=2"
    metrics = reader.deps.metrics
    answer(reader, path, query)
    key = body_key(reader, path, query)
    kept = reader.replay
    reader.replay = None
    try:
        reader.deps.catalog.near._drop(key)
        before = dict(metrics.counts)
        answer_without_replay(reader, path, query, {})
        full = {k: v - before.get(k, 0) for k, v in metrics.counts.items() if v != before.get(k)}
    finally:
        reader.replay = kept
    forget_near(reader, path, query)
    before = dict(metrics.counts)
    with caplog.at_level(logging.INFO, logger="peregrine.request"):
        assert answer(reader, path, query).replayed
    replayed = {k: v - before.get(k, 0) for k, v in metrics.counts.items()
                if v != before.get(k)}
    assert replayed == full
    assert replayed["cache.products.hit"] == 1 and replayed["cache.generation.near_hit"] == 1
    lines = [r for r in caplog.records if r.name == "peregrine.request"]
    assert [(r.route, r.status) for r in lines] == [("/v1/products", 200)]


def test_a_write_between_is_never_followed_by_an_old_replay_from_memcached(
        reader, client, admin, catalog):
    product = catalog[0]
    path = f"/v1/products/{product['id']}"
    answer(reader, path)
    forget_near(reader, path)
    assert answer(reader, path).replayed  # from memcached
    forget_near(reader, path)
    patch_price(client, admin, product["id"], "13.00")  # a sibling worker: memcached deleted
    after = answer(reader, path)
    assert not after.replayed and b'"price":"13.00"' in after.body  # a miss: the full path
    forget_near(reader, path)
    again = answer(reader, path)
    assert again.replayed and b'"price":"13.00"' in again.body


def test_a_memcached_read_that_overlapped_a_write_is_not_kept_near(
        reader, client, admin, catalog, monkeypatch):
    """Forced interleaving: the replay's memcached read answers the old body, then a write."""
    product = catalog[0]
    path = f"/v1/products/{product['id']}"
    answer(reader, path)
    forget_near(reader, path)
    cache = reader.deps.catalog.reads._cache
    real_gets, pause, watched = cache.gets, Pause(), body_key(reader, path)

    def gets(key):
        found = real_gets(key)
        if key == watched and gevent.getcurrent() is pause.reader:
            pause()
        return found

    monkeypatch.setattr(cache, "gets", gets)
    start_reader(pause, answer, reader, path)  # read the old body from memcached, paused
    patch_price(client, admin, product["id"], "21.00")
    old = finish(pause)
    assert old.replayed and b'"price":"1.00"' in old.body  # it began before the write
    assert reader.deps.catalog.near.get(body_key(reader, path)) is None  # not kept
    assert b'"price":"21.00"' in answer(reader, path).body
    assert b'"price":"21.00"' in answer(reader, path).body


def test_a_stale_memcached_record_takes_the_full_path(reader, catalog):
    path = f"/v1/products/{catalog[0]['id']}"
    first = answer(reader, path)
    cache = reader.deps.catalog.reads._cache
    key = body_key(reader, path)
    record, token = cache.gets(key)
    assert cache.cas(key, b"1:+" + first.body, token, ttl=60)  # soft expiry long past
    forget_near(reader, path)
    stale = answer(reader, path)
    assert not stale.replayed and stale.body == first.body  # falcon refreshed it
    forget_near(reader, path)
    assert answer(reader, path).replayed  # fresh again


def test_a_target_answered_otherwise_now_is_no_longer_recorded(reader, client, admin, catalog):
    product = catalog[2]
    path = f"/v1/products/{product['id']}"
    answer(reader, path)
    assert (path, "") in reader.replay._records
    deleted = client.simulate_delete(path, headers=admin["headers"])
    assert deleted.status_code == 204, deleted.text
    gone = answer(reader, path)
    assert gone.status.startswith("404") and not gone.replayed
    assert (path, "") not in reader.replay._records
    assert answer(reader, path).status.startswith("404")


def test_no_memcached_probe_while_the_node_is_failing_and_one_request_id_on_the_way(
        reader, catalog, monkeypatch):
    from app import middleware

    path = f"/v1/products/{catalog[0]['id']}"
    first = answer(reader, path)
    cache = reader.deps.catalog.reads._cache
    gets, real_gets = [], cache.gets
    monkeypatch.setattr(cache, "gets", lambda k: gets.append(k) or real_gets(k))
    made, real_new = [], middleware.new_request_id
    monkeypatch.setattr(middleware, "new_request_id", lambda: made.append(1) or real_new())
    node = cache._owner(body_key(reader, path))
    node.failures = 1  # its last call failed: the full path will find out for itself
    forget_near(reader, path)
    unsteady = answer(reader, path)
    assert not unsteady.replayed and unsteady.body == first.body
    assert gets == [body_key(reader, path)]  # the full path's read only
    assert len(made) == 1  # the ids the replay began with went on into falcon's path
    assert node.failures == 0  # that read succeeded
    forget_near(reader, path)
    assert answer(reader, path).replayed
