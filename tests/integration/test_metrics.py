"""statsd metrics per route template, sent over real UDP."""

import socket
from dataclasses import replace

import falcon.testing


def _receive_lines(receiver):
    """Every metric line received until the socket is quiet (datagrams hold several)."""
    lines = []
    try:
        while True:
            lines += receiver.recv(65536).decode().split("\n")
    except TimeoutError:
        pass
    return lines


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
    try:
        app.deps.metrics.flush()  # batched in process (app/metrics.py)
        packets = _receive_lines(receiver)
    finally:
        receiver.close()
        app.deps.close()
    assert "peregrine.http.healthz.get.200:1|c" in packets
    assert any(p.startswith("peregrine.http.healthz.get:") and p.endswith("|ms") for p in packets)
    # The template, never the raw id, names the metric.
    assert "peregrine.http.v1.products._product_id_.get.404:1|c" in packets
    assert not any("00000000-0000" in p for p in packets)


def test_counters_are_summed_and_every_timer_sample_is_kept():
    from app.metrics import MAX_PACKET, BatchingStatsClient

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    client = BatchingStatsClient(*receiver.getsockname())
    try:
        for i in range(300):
            client.incr("http.healthz.get.200")
            client.timing("http.healthz.get", i / 1000)
        client.incr("orders.placed", 3)
        client.gauge("pool.size", 4)
        client.flush()
        datagrams = []
        try:
            while True:
                datagrams.append(receiver.recv(65536))
        except TimeoutError:
            pass
    finally:
        client.close()
        receiver.close()
    assert len(datagrams) > 1 and all(len(d) <= MAX_PACKET for d in datagrams)
    lines = b"\n".join(datagrams).decode().split("\n")
    assert lines.count("peregrine.http.healthz.get.200:300|c") == 1
    assert "peregrine.orders.placed:3|c" in lines
    assert "peregrine.pool.size:4|g" in lines
    timers = [line for line in lines if line.endswith("|ms")]
    assert timers == ["peregrine.http.healthz.get:%0.6f|ms" % (i / 1000) for i in range(300)]


def test_live_worker_batches_app_and_gunicorn_metrics_and_flushes_on_sigterm(
        live_server_factory):
    from tests.support.http import request

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(1)
    host, port = receiver.getsockname()
    try:
        server = live_server_factory(PEREGRINE_STATSD_ADDR=f"{host}:{port}")
        for _ in range(40):
            assert request(server.url + "/healthz").status == 200
        assert server.stop() == 0  # what is still batched goes out on the way down
        lines = _receive_lines(receiver)
    finally:
        receiver.close()
    # logger_class (app.metrics) is imported in the master: it must not
    # drag in anything gevent would then warn about.
    assert "MonkeyPatchWarning" not in server.log() and "Traceback" not in server.log()

    def total(name, suffix):
        return sum(int(line[len(name) + 1:-len(suffix)]) for line in lines
                   if line.startswith(name + ":") and line.endswith(suffix))

    # The readiness probes of the test fixture are /healthz requests too.
    served = total("peregrine.http.healthz.get.200", "|c")
    assert served >= 40
    assert sum(line.startswith("peregrine.http.healthz.get:") for line in lines) == served
    # gunicorn's own per-request metrics: same names and line format as its Statsd logger.
    assert total("peregrine.gunicorn.gunicorn.requests", "|c|@1.0") == served
    assert total("peregrine.gunicorn.gunicorn.request.status.200", "|c|@1.0") == served
    assert sum(line.startswith("peregrine.gunicorn.gunicorn.request.duration:")
               and line.endswith("|ms") for line in lines) == served
