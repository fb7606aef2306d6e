"""statsd names, lines and datagrams, read from a UDP socket on loopback."""

from __future__ import annotations

import random
import socket

import pytest

from app import flushing, metrics
from app.metrics import MAX_PACKET, BatchingStatsClient, packets, route_name


@pytest.fixture
def sink():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock) -> list[bytes]:
    """Every datagram waiting on ``sock`` (loopback delivers on send)."""
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(65536))
        except BlockingIOError:
            return datagrams


@pytest.fixture
def client(sink):
    stats = BatchingStatsClient(*sink.getsockname(), prefix="peregrine")
    yield stats
    stats.close()


@pytest.mark.parametrize(("method", "template", "name"), [
    ("GET", "/v1/products/{product_id}", "v1.products._product_id_.get"),
    ("POST", "/v1/orders/{order_id}/cancel", "v1.orders._order_id_.cancel.post"),
    ("GET", "/healthz", "healthz.get"),
    ("HEAD", "/", "root.head"),
    ("GET", None, "unmatched.get"),
    ("PROPFIND", "", "unmatched.propfind"),
])
def test_route_names_come_from_templates_never_from_paths(method, template, name):
    assert route_name(method, template) == name


def test_packets_join_lines_up_to_the_limit_in_order():
    lines = [f"metric.{i}:1|c" for i in range(500)]
    datagrams = list(packets(lines))
    assert len(datagrams) > 1
    assert all(len(datagram) <= MAX_PACKET for datagram in datagrams)
    assert b"\n".join(datagrams).decode().split("\n") == lines


def test_packets_fill_each_datagram_before_starting_the_next():
    lines = ["a" * 9] * 10  # 9 bytes and a newline each
    assert [len(d) for d in packets(lines, limit=30)] == [29, 29, 29, 9]


def test_packets_are_greedy_over_mixed_line_lengths():
    # Each datagram takes every next line that still fits, and only those.
    rng = random.Random(7)
    for limit in (1, 15, 64, MAX_PACKET):
        lines = ["m" * rng.randint(1, 2 * limit) for _ in range(300)]
        datagrams = [d.decode() for d in packets(lines, limit=limit)]
        assert "\n".join(datagrams).split("\n") == lines
        taken = 0
        for datagram in datagrams:
            count = datagram.count("\n") + 1
            assert len(datagram) <= limit or count == 1
            following = taken + count
            if following < len(lines):
                assert len(datagram) + 1 + len(lines[following]) > limit
            taken = following


def test_a_line_longer_than_the_limit_is_sent_alone():
    assert list(packets(["x" * 50, "y"], limit=20)) == [b"x" * 50, b"y"]
    assert list(packets([])) == []


def test_counters_are_summed_per_name_until_the_flush(client, sink):
    client.incr("cache.product.hit")
    client.incr("cache.product.hit", 4)
    client.incr("auth.token.invalid")
    assert received(sink) == []  # nothing leaves before the flush
    client.flush()
    assert received(sink) == [
        b"peregrine.cache.product.hit:5|c\nperegrine.auth.token.invalid:1|c"]


def test_timings_are_all_kept_in_arrival_order(client, sink):
    client.timing("http.healthz.get", 1.5)
    client.timing("http.healthz.get", 0.25)
    client.flush()
    lines = b"\n".join(received(sink)).split(b"\n")
    # (request timers are also counted into latency buckets: test_metrics_latency_histogram.py)
    assert [line for line in lines if line.endswith(b"|ms")] == [
        b"peregrine.http.healthz.get:1.500000|ms", b"peregrine.http.healthz.get:0.250000|ms"]


def test_gauges_keep_the_last_value_and_negative_ones_are_set_not_subtracted(client, sink):
    client.gauge("db.pool.idle", 3)
    client.gauge("db.pool.idle", 2)
    client.gauge("drift", -4)
    client.flush()
    assert received(sink) == [
        b"peregrine.db.pool.idle:2|g\nperegrine.drift:0|g\nperegrine.drift:-4|g"]


def test_a_flush_with_nothing_pending_sends_nothing(client, sink):
    client.incr("zero", 0)
    client.flush()
    client.flush()
    assert received(sink) == []


def test_many_timings_flush_themselves_in_full_datagrams(client, sink):
    for _ in range(metrics.MAX_PENDING):
        client.timing("t", 1.0)
    datagrams = received(sink)
    lines = b"\n".join(datagrams).split(b"\n")
    assert len(lines) == metrics.MAX_PENDING
    assert all(len(d) <= MAX_PACKET for d in datagrams)


def test_an_unprefixed_client_sends_bare_names(sink):
    stats = BatchingStatsClient(*sink.getsockname(), prefix="")
    stats.incr("x")
    stats.close()  # closing flushes what is pending
    assert received(sink) == [b"x:1|c"]


def test_pending_metrics_go_out_with_the_process_wide_flush(client, sink):
    client.incr("at.exit")
    flushing.flush_all()
    assert received(sink) == [b"peregrine.at.exit:1|c"]


def test_create_without_an_address_gives_a_sink_that_accepts_everything():
    null = metrics.create(None)
    assert not isinstance(null, BatchingStatsClient)
    null.incr("x")
    null.timing("y", 1.0)
    null.gauge("z", 1)
    null.flush()


def test_create_with_an_address_sends_there(sink):
    stats = metrics.create(sink.getsockname())
    stats.incr("created")
    stats.close()
    assert received(sink) == [b"peregrine.created:1|c"]
