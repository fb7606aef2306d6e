"""Request latency as statsd counters a Prometheus histogram can be built from."""

from __future__ import annotations

import socket

import pytest

from app.metrics import LATENCY_BUCKETS_MS, BatchingStatsClient, latency_histogram


def test_each_sample_counts_in_every_bucket_whose_bound_it_is_within():
    lines = latency_histogram([("http.healthz.get", 3.0), ("http.healthz.get", 5.0),
                               ("http.healthz.get", 7.5), ("http.healthz.get", 4000.0)])
    assert lines == [
        "http_latency.healthz.get.le_5:2|c",     # 3 and exactly 5 ms (le is inclusive)
        "http_latency.healthz.get.le_10:3|c",
        "http_latency.healthz.get.le_25:3|c",
        "http_latency.healthz.get.le_50:3|c",
        "http_latency.healthz.get.le_100:3|c",
        "http_latency.healthz.get.le_250:3|c",
        "http_latency.healthz.get.le_500:3|c",
        "http_latency.healthz.get.le_1000:3|c",
        "http_latency.healthz.get.le_2500:3|c",
        "http_latency.healthz.get.le_inf:4|c",
    ]


def test_buckets_below_the_fastest_sample_are_left_out_and_routes_kept_apart():
    lines = latency_histogram([("http.v1.products._product_id_.get", 120.0),
                               ("http.v1.orders.post", 30.0)], prefix="peregrine.")
    assert lines[0] == "peregrine.http_latency.v1.products._product_id_.get.le_250:1|c"
    assert [line for line in lines if ".v1.orders.post." in line][0] == \
        "peregrine.http_latency.v1.orders.post.le_50:1|c"
    assert len(lines) == 5 + 7  # 250..inf and 50..inf


def test_only_request_timers_feed_the_histogram():
    assert latency_histogram([("webhooks.delivery.ms", 12.0)]) == []
    assert latency_histogram([]) == []


@pytest.mark.parametrize("ms", [0.0, 0.001, 2500.0, 2500.1, 1e9])
def test_the_inf_bucket_counts_every_sample(ms):
    lines = latency_histogram([("http.x.get", ms)])
    assert lines[-1] == "http_latency.x.get.le_inf:1|c"
    assert len(lines) == len(LATENCY_BUCKETS_MS) + 1 - sum(ms > b for b in LATENCY_BUCKETS_MS)


def test_the_flush_sends_the_buckets_next_to_the_samples():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(1)
    stats = BatchingStatsClient(*sink.getsockname(), prefix="peregrine")
    try:
        for ms in (1.0, 2.0, 300.0):
            stats.timing("http.healthz.get", ms)
        stats.flush()
        lines = sink.recv(65536).decode().split("\n")
    finally:
        stats.close()
        sink.close()
    assert lines.count("peregrine.http.healthz.get:300.000000|ms") == 1
    assert "peregrine.http_latency.healthz.get.le_5:2|c" in lines
    assert "peregrine.http_latency.healthz.get.le_250:2|c" in lines
    assert "peregrine.http_latency.healthz.get.le_500:3|c" in lines
    assert "peregrine.http_latency.healthz.get.le_inf:3|c" in lines
