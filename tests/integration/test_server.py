"""Peregrine under real gunicorn gevent workers with the production config."""

import threading
import time

import pytest

from tests.support.http import raw_exchange, request
from tests.support.waiting import wait_until


@pytest.mark.parametrize("worker_class", ["peregrine", "gevent", "gevent_pywsgi"])
def test_served_by_gunicorn_with_green_workers(live_server_factory, worker_class):
    live_server = live_server_factory(PEREGRINE_LOG_LEVEL="info",
                                      PEREGRINE_WORKER_CLASS=worker_class)
    assert request(live_server.url + "/readyz").json == {
        "status": "ok", "database": "ok", "cache": "ok"}
    live_server.stop()
    log = live_server.log()
    assert "psycopg2 green" in log
    expected = {"peregrine": "hotpath.worker.GeventHTTPWorker"}.get(worker_class, worker_class)
    assert f"Using worker: {expected}" in log
    assert "MonkeyPatchWarning" not in log
    assert "Traceback" not in log


def test_slow_query_does_not_stall_other_requests_on_the_worker(live_server_factory):
    server = live_server_factory("tests.support.slow_app:application")
    slow = {}

    def sleeper():
        started = time.monotonic()
        slow["status"] = request(server.url + "/_test/sleep?s=2").status
        slow["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.3)  # the query is now running inside the single worker
    started = time.monotonic()
    fast = request(server.url + "/healthz")
    fast_elapsed = time.monotonic() - started
    ready = request(server.url + "/readyz")  # needs a second pool connection
    thread.join()
    assert fast.status == 200 and ready.status == 200
    assert fast_elapsed < 0.5, f"/healthz waited {fast_elapsed:.2f}s behind pg_sleep"
    assert slow["status"] == 200 and slow["elapsed"] >= 2


def test_postgres_restart_is_survived_without_restarting_the_app(live_server, postgres):
    for _ in range(3):  # fill the worker's pool with idle connections
        assert request(live_server.url + "/readyz").status == 200
    postgres.restart()
    statuses = [request(live_server.url + "/readyz").status for _ in range(5)]
    assert statuses == [200] * 5
    assert live_server.proc.poll() is None


def test_postgres_down_is_503_then_recovers(live_server, postgres):
    assert request(live_server.url + "/readyz").status == 200
    postgres.stop()
    try:
        started = time.monotonic()
        down = request(live_server.url + "/readyz")
        elapsed = time.monotonic() - started
        assert down.status == 503
        assert down.json["error"]["code"] == "unavailable"
        assert down.headers["retry-after"]
        assert elapsed < 5
        assert request(live_server.url + "/healthz").status == 200
    finally:
        postgres.start()
    wait_until(lambda: request(live_server.url + "/readyz").status == 200, timeout=10)


def test_memcached_down_degrades_readiness_but_keeps_serving(
        live_server_factory, run_dir):
    from app.manage.services import MemcachedServer

    cache = MemcachedServer(run_dir / "memcached-outage")
    cache.start()
    server = live_server_factory(PEREGRINE_MEMCACHED_SERVERS=f"127.0.0.1:{cache.port}")
    assert request(server.url + "/readyz").json["cache"] == "ok"
    cache.stop()
    for _ in range(10):
        result = request(server.url + "/readyz")
        assert result.status == 200
        assert result.json == {"status": "ok", "database": "ok", "cache": "degraded"}
    cache.start()
    wait_until(lambda: request(server.url + "/readyz").json["cache"] == "ok", timeout=10)
    cache.stop()


def test_declared_body_over_the_limit_is_413_before_routing(live_server):
    big = b"x" * (70 * 1024)
    head = (b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(big)).encode() + b"\r\nConnection: close\r\n\r\n")
    reply = raw_exchange(live_server.port, head + big)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply


def test_term_lets_an_in_flight_request_finish(live_server_factory):
    server = live_server_factory("tests.support.slow_app:application")
    outcome = {}

    def sleeper():
        outcome["status"] = request(server.url + "/_test/sleep?s=1").status

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.3)
    server.proc.terminate()
    thread.join(10)
    assert outcome.get("status") == 200
    assert server.proc.wait(30) == 0


def chunked(body: bytes, size: int = 8192) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def chunked_post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + chunked(body)


@pytest.mark.parametrize("worker_class", ["peregrine", "gevent"])
def test_chunked_bodies_are_read_and_limited(live_server_factory, worker_class):
    server = live_server_factory(PEREGRINE_WORKER_CLASS=worker_class)
    ok = raw_exchange(server.port, chunked_post(
        "/v1/auth/register",
        b'{"email": "chunky@example.test", "password": "long enough", "name": "C"}'))
    assert ok.startswith(b"HTTP/1.1 201"), ok[:300]
    too_big = b'{"email": "big@example.test", "password": "long enough", "name": "' + (
        b"x" * (70 * 1024)) + b'"}'
    reply = raw_exchange(server.port, chunked_post("/v1/auth/register", too_big))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b'"payload_too_large"' in reply
