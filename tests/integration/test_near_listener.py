"""Near entries that hear other nodes' writes (app/near_listener.py), against the contract.

A writer and a reader share Postgres and memcached; the reader has a slot
table of its own (another node) and a listener on a real LISTEN session.
While it hears heartbeats its entries outlive the 0.5 s ttl, and another
node's write must still show within 1 s: because the reader heard the
announcement, not because the entry expired. Where the reader's session
is frozen (SIGSTOP on its Postgres backend), the reader is a real gunicorn
node: a listener in this unpatched process would block the test on the
frozen backend.
"""

import contextlib
import os
import signal
import time

import gevent
from pymemcache.client.base import Client as MemcacheClient

from app import nearcache
from app.near_listener import Announcer, Listener
from app.nearcache import NearCache, Slots
from tests.support.api import new_user
from tests.support.catalog import patch_price, price
from tests.support.greenlets import first_change, green_wait_until
from tests.support.http import request

VISIBLE_WITHIN = 1.0  # the contract's bound for other nodes
TTL = 0.5
LISTENED_TTL = 10.0  # long: an entry that changes within 1 s was failed, not expired


def listening_node(app):
    """Give ``app`` a near cache of its own slot table (another host) that listens."""
    if app.deps.near_listener is not None:  # the factory's, for its own near cache
        app.deps.near_listener.close()
    near = NearCache(TTL, slots=Slots(1024), tag=app.deps.cache.tag, listened_ttl=LISTENED_TTL)
    app.deps.catalog.use_near_cache(near)
    listener = Listener(near, app.deps.pool, metrics=app.deps.metrics)
    app.deps.near_listener = listener  # closed with the app
    listener.start()
    green_wait_until(lambda: near.heard_at > time.monotonic() - 0.2, 5.0)
    return near


def announcing(app):
    """Let ``app``'s writes announce their keys (off by default)."""
    app.deps.near_announcer = Announcer(app.deps.pool, nearcache.TABLE.node)  # closed with it
    app.deps.catalog.announce_invalidations(app.deps.near_announcer)


def insert_product(db, price="10.00"):
    with db.cursor() as cur:
        cur.execute("INSERT INTO products (sku, name, price, stock) VALUES (%s, 'Heard', %s, 5)"
                    " RETURNING id::text", (f"HEARD-{time.monotonic_ns()}", price))
        return cur.fetchone()[0]


def test_a_heard_entry_outlives_the_ttl_and_another_nodes_write_still_shows_at_once(
        db, memcached_nodes, instances):
    (writer, writer_app), (reader, reader_app) = instances(memcached_nodes(1))
    announcing(writer_app)
    listening_node(reader_app)
    metrics = reader_app.deps.metrics
    admin = new_user(writer, "admin", db)
    product_id = insert_product(db)

    assert price(reader, product_id) == "10.00"  # read through memcached, kept near
    gets = metrics["cache.product.hit"] + metrics["cache.product.miss"]
    gevent.sleep(TTL * 3)  # the listener keeps hearing its heartbeats meanwhile
    assert price(reader, product_id) == "10.00"
    assert metrics["cache.product.hit"] + metrics["cache.product.miss"] == gets, (
        "the entry did not outlive the ttl although the listener heard every heartbeat")

    started = time.monotonic()  # before the write: its commit is inside the call
    patch_price(writer, admin, product_id, "20.00")
    seen = first_change(lambda: price(reader, product_id), "10.00", 3.0)
    stale_for = time.monotonic() - started
    assert seen is not None and stale_for < VISIBLE_WITHIN, (
        f"the other node served the old price {stale_for:.2f} s after the write: its entry "
        f"was not failed by the announcement")
    assert metrics["cache.near.heard"] >= 1


def test_a_node_announces_nothing_to_itself(db, memcached_nodes, instances):
    """A reader whose own writes come back on the channel does not bump for them twice."""
    ((node, node_app),) = instances(memcached_nodes(1), 1)
    listening_node(node_app)
    node_app.deps.near_announcer = Announcer(node_app.deps.pool,
                                             node_app.deps.catalog.near.slots.node)
    node_app.deps.catalog.announce_invalidations(node_app.deps.near_announcer)
    admin = new_user(node, "admin", db)
    product_id = insert_product(db)
    patch_price(node, admin, product_id, "11.00")
    gevent.sleep(0.3)  # long enough to hear it
    assert node_app.deps.metrics["cache.near.heard"] == 0
    assert price(node, product_id) == "11.00"  # its own write: seen at once


def listener_backends(db, server, kind="near"):
    """Postgres backend pids of ``server``'s workers' listening (or announcing) sessions."""
    master = server.proc.pid
    with open(f"/proc/{master}/task/{master}/children") as f:
        workers = [int(p) for p in f.read().split()]
    with db.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)",
                    ([f"peregrine-{kind}-{w}" for w in workers],))
        return [pid for (pid,) in cur.fetchall()]


@contextlib.contextmanager
def frozen(pids):
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def served_price(url, product_id):
    answer = request(f"{url}/v1/products/{product_id}")
    assert answer.status == 200, answer.body
    return answer.json["price"]


def test_a_node_whose_listening_session_freezes_still_sees_writes_within_one_second(
        db, client, memcached, live_server_factory):
    reader = live_server_factory(PEREGRINE_WORKERS="1", PEREGRINE_RATE_LIMIT_PER_MINUTE="0",
                                 PEREGRINE_NEAR_CACHE_LISTENED_TTL="10")
    green_wait_until(lambda: listener_backends(db, reader), 10.0)
    admin = new_user(client, "admin", db)
    product_id = insert_product(db)
    gevent.sleep(0.3)  # heartbeats heard: entries recorded now may outlive the ttl

    assert served_price(reader.url, product_id) == "10.00"
    # Behind every cache's back: only an entry held near still answers 10.00.
    with db.cursor() as cur:
        cur.execute("UPDATE products SET price = 15.00 WHERE id = %s", (product_id,))
    flush = MemcacheClient(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1)
    flush.flush_all(noreply=False)
    flush.close()
    gevent.sleep(TTL + 0.5)
    assert served_price(reader.url, product_id) == "10.00", (
        "the reader's entry did not outlive the ttl: it is not hearing heartbeats")

    with frozen(listener_backends(db, reader)):
        committed = time.monotonic()  # just before: the commit is inside the call
        patch_price(client, admin, product_id, "20.00")  # announced; never delivered
        seen = first_change(lambda: served_price(reader.url, product_id), "10.00", 10.0)
        stale_for = time.monotonic() - committed
    assert seen is not None and stale_for < VISIBLE_WITHIN, (
        f"a node that stopped hearing served its entry {stale_for:.2f} s after another "
        f"node's write (its listened ttl is 10 s)")
    assert served_price(reader.url, product_id) == "20.00"


def held_past_the_ttl(db, memcached, reader_url, product_id):
    """Prove ``reader_url`` serves 10.00 from a near entry living past the ttl."""
    assert served_price(reader_url, product_id) == "10.00"
    # Behind every cache's back: only an entry held near still answers 10.00.
    with db.cursor() as cur:
        cur.execute("UPDATE products SET price = 15.00 WHERE id = %s", (product_id,))
    flush = MemcacheClient(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1)
    flush.flush_all(noreply=False)
    flush.close()
    gevent.sleep(TTL + 0.5)
    assert served_price(reader_url, product_id) == "10.00", (
        "the reader's entry did not outlive the ttl: it is not hearing heartbeats")


def test_a_write_whose_announcement_stalls_still_shows_on_other_nodes_within_one_second(
        db, client, memcached, live_server_factory):
    """The writer's announcing session freezes after its commit; the reader hears its
    own heartbeats all along, so only the writer can tell that its keys never went out."""
    env = dict(PEREGRINE_WORKERS="1", PEREGRINE_RATE_LIMIT_PER_MINUTE="0",
               PEREGRINE_NEAR_CACHE_LISTENED_TTL="10")
    writer, reader = live_server_factory(**env), live_server_factory(**env)
    green_wait_until(lambda: listener_backends(db, reader), 10.0)
    admin = new_user(client, "admin", db)
    product_id = insert_product(db, price="9.00")
    patch = {"headers": admin["headers"], "method": "PATCH"}
    answer = request(f"{writer.url}/v1/products/{product_id}", body={"price": "10.00"}, **patch)
    assert answer.status == 200, answer.body  # and the writer's announcing session opens
    green_wait_until(lambda: listener_backends(db, writer, "announce"), 10.0)
    gevent.sleep(0.3)  # the announcement heard; heartbeats heard since
    held_past_the_ttl(db, memcached, reader.url, product_id)

    with frozen(listener_backends(db, writer, "announce")):
        started = time.monotonic()  # before the write: its commit is inside the call
        answer = request(f"{writer.url}/v1/products/{product_id}", body={"price": "20.00"},
                         **patch)
        assert answer.status == 200, answer.body  # announcing never holds a write's answer
        seen = first_change(lambda: served_price(reader.url, product_id), "10.00", 10.0)
        stale_for = time.monotonic() - started
    assert seen is not None and stale_for < VISIBLE_WITHIN, (
        f"another node served the old price {stale_for:.2f} s after a write whose "
        f"announcement stalled (listened ttl 10 s)")
    assert served_price(reader.url, product_id) == "20.00"


def workers_of(server):
    master = server.proc.pid
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(p) for p in f.read().split()}


def listening_workers(db, server):
    """The workers of ``server`` that hold a listening session now."""
    with db.cursor() as cur:
        cur.execute("SELECT application_name FROM pg_stat_activity"
                    " WHERE application_name LIKE 'peregrine-near-%'")
        pids = {int(name.rsplit("-", 1)[1]) for (name,) in cur.fetchall()}
    return pids & workers_of(server)


def test_one_worker_of_a_node_listens_and_a_sibling_takes_over_when_it_dies(
        db, live_server_factory):
    """Postgres wakes every listening session for every NOTIFY: one per node, not per worker."""
    node = live_server_factory(PEREGRINE_WORKERS="2", PEREGRINE_NEAR_CACHE_LISTENED_TTL="10")
    green_wait_until(lambda: len(workers_of(node)) == 2 and listening_workers(db, node), 10.0)
    gevent.sleep(1.0)  # both workers have tried for the node's listener many times
    leaders = listening_workers(db, node)
    assert len(leaders) == 1, f"{len(leaders)} workers of one node hold a listening session"
    (leader,) = leaders
    os.kill(leader, signal.SIGKILL)  # its lock goes with it, whatever the way it ends
    successor = green_wait_until(lambda: listening_workers(db, node) - {leader}, 5.0)
    assert len(successor) == 1
    # Let the replacement worker boot: gunicorn loses a SIGTERM that reaches a
    # worker before it installs its handlers, and the stop would wait 30 s.
    green_wait_until(lambda: len(workers_of(node)) == 2, 10.0)
    gevent.sleep(1.5)
