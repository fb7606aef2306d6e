"""The request log line: one JSON object per line on stderr, in order, never lost."""

import json
import logging
import socket
import threading

import pytest

from tests.support.http import request
from tests.support.logs import buffered_app_log

FIELDS = ["ts", "level", "logger", "msg", "pid", "request_id", "trace_id", "method", "route",
          "status", "duration_ms", "user_id"]


def request_lines(text):
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)  # every JSON line parses on its own
            if entry.get("msg") == "request":
                lines.append(entry)
    return lines


@pytest.fixture
def buffered_log(monkeypatch):
    """app.logs configured onto an in-memory stderr; restored afterwards."""
    from app import logs

    with buffered_app_log(monkeypatch) as stream:
        yield logs, stream


def test_fast_request_line_matches_the_formatter_record(buffered_log):
    logs, stream = buffered_log
    token = logs.tracing.current.set(("abc-123", "4bf92f3577b34da6a3ce929d0e0e4736",
                                      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
    try:
        logs.request_line("GET", "/v1/products/{product_id}", 200, 1.25, None)
        logging.getLogger("peregrine.request").info("request", extra={
            "method": "GET", "route": "/v1/products/{product_id}", "status": 200,
            "duration_ms": 1.25, "user_id": None})
    finally:
        logs.tracing.current.reset(token)
    logs._buffer.flush()
    fast, slow = request_lines(stream.getvalue().decode())
    assert list(fast) == FIELDS == list(slow)
    assert {k: v for k, v in fast.items() if k != "ts"} == {
        k: v for k, v in slow.items() if k != "ts"}
    assert fast["ts"][:17] == slow["ts"][:17] and fast["ts"].endswith("Z")


def test_fast_request_line_outside_a_request_omits_the_ids_like_the_formatter(buffered_log):
    logs, stream = buffered_log
    logs.request_line("POST", None, 404, 0.5, 7)
    logging.getLogger("peregrine.request").info("request", extra={
        "method": "POST", "route": None, "status": 404, "duration_ms": 0.5, "user_id": 7})
    logs._buffer.flush()
    fast, slow = request_lines(stream.getvalue().decode())
    assert list(fast) == [f for f in FIELDS if f not in ("request_id", "trace_id")] == list(slow)
    assert {k: v for k, v in fast.items() if k != "ts"} == {
        k: v for k, v in slow.items() if k != "ts"}


def test_records_keep_their_order_and_warnings_flush_at_once(buffered_log):
    logs, stream = buffered_log
    logs.request_line("GET", "/healthz", 200, 0.1, None)
    logging.getLogger("peregrine.test").info("between")
    assert stream.getvalue() == b""  # still buffered
    logging.getLogger("peregrine.test").warning("problem")
    msgs = [json.loads(line)["msg"] for line in stream.getvalue().decode().splitlines()]
    assert msgs == ["request", "between", "problem"]


def test_request_lines_survive_sigterm_in_order(live_server_factory):
    server = live_server_factory(PEREGRINE_LOG_LEVEL="info")
    ids = [f"order-{i:04d}" for i in range(300)]

    # Keep-alive, one request after another, so the log order is known.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        reader = sock.makefile("rb")
        for request_id in ids:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-ID: {request_id}"
                         "\r\n\r\n".encode())
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
    # Stopped at once (SIGTERM): the last lines are still in the worker's buffer.
    assert server.stop() == 0
    lines = [entry for entry in request_lines(server.log())
             if entry["request_id"].startswith("order-")]
    assert [entry["request_id"] for entry in lines] == ids
    assert all(list(entry) == FIELDS for entry in lines)
    assert lines[0]["route"] == "/healthz" and lines[0]["status"] == 200


def test_request_lines_survive_concurrent_load_and_sigterm(live_server_factory):
    server = live_server_factory(PEREGRINE_LOG_LEVEL="info")
    sent = []

    def client(n):
        for i in range(50):
            request_id = f"load-{n}-{i}"
            assert request(server.url + "/healthz",
                           headers={"X-Request-ID": request_id}).status == 200
            sent.append(request_id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.stop() == 0
    logged = [entry["request_id"] for entry in request_lines(server.log())
              if entry["request_id"].startswith("load-")]
    assert sorted(logged) == sorted(sent)
    for n in range(4):  # each client's requests were sequential: so are its lines
        own = [r for r in logged if r.startswith(f"load-{n}-")]
        assert own == [f"load-{n}-{i}" for i in range(50)]
