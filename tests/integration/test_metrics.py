"""statsd metrics per route template, sent over real UDP."""

import socket
from dataclasses import replace

import falcon.testing


def test_requests_are_counted_and_timed_per_route_template(config, db, cache_flushed):
    from app.factory import create_app

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    app = create_app(replace(config, statsd_addr=receiver.getsockname()),
                     configure_logging=False)
    client = falcon.testing.TestClient(app)
    client.simulate_get("/healthz")
    client.simulate_get("/v1/products/00000000-0000-4000-8000-000000000000")
    packets = []
    try:
        while True:
            packets.append(receiver.recv(4096).decode())
    except socket.timeout:
        pass
    finally:
        receiver.close()
        app.deps.close()
    assert "peregrine.http.healthz.get.200:1|c" in packets
    assert any(p.startswith("peregrine.http.healthz.get:") and p.endswith("|ms") for p in packets)
    # The template, never the raw id, names the metric.
    assert "peregrine.http.v1.products._product_id_.get.404:1|c" in packets
    assert not any("00000000-0000" in p for p in packets)
