"""Request bodies that break off or break framing, against real gunicorn.

The body is read by the app from the server's ``wsgi.input``; when the server
finds the body cut short or malformed there, the app must answer as the
client's fault (400/413, or 499 in the logs when nobody is left to answer),
never a 500 with a traceback, and the connection must end.
"""

import json
import socket
import time

import pytest

from tests.support.http import exchange_until_closed
from tests.support.waiting import wait_until

HEAD = (b"POST /v1/auth/register HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/json\r\n")


def split_response(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(("worker_class", "chunk_size"), [
    ("peregrine", b"fffffffffffffffff"),  # 2**68 - 1: llhttp's "Chunk size overflow"
    ("peregrine", b"zz"),
    ("gevent", b"zz"),
])
def test_a_broken_chunk_size_is_400_and_the_connection_ends(live_server_factory,
                                                             worker_class, chunk_size):
    server = live_server_factory(PEREGRINE_WORKER_CLASS=worker_class)
    raw, closed = exchange_until_closed(
        server.port, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk_size + b"\r\nabc")
    status, headers, body = split_response(raw)
    assert status == 400, raw[:300]
    envelope = json.loads(body)
    assert envelope["error"]["code"] == "bad_request"
    assert envelope["request_id"] == headers["x-request-id"]
    if worker_class == "peregrine":
        # The rest of the stream can never be framed: no keep-alive is offered.
        assert headers["connection"] == "close"
        assert closed
    assert "Traceback" not in server.log()


def _statsd_receiver():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    return receiver


def _drain(receiver) -> list[str]:
    packets = []
    try:
        while True:
            packets.extend(receiver.recv(65536).decode().split("\n"))
    except TimeoutError:
        return packets


def _records(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def _register_lines(log: str) -> list[dict]:
    return [r for r in _records(log)
            if r["msg"] == "request" and r.get("route") == "/v1/auth/register"]


def test_an_aborted_upload_is_one_short_log_line_not_a_500(live_server_factory):
    receiver = _statsd_receiver()
    try:
        host, port = receiver.getsockname()
        server = live_server_factory(PEREGRINE_LOG_LEVEL="info",
                                     PEREGRINE_STATSD_ADDR=f"{host}:{port}")
        # 1000 bytes announced, 10 sent, then the client closes.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(HEAD + b"Content-Length: 1000\r\n\r\n" + b'{"email":"')
        # Log lines may be buffered for a moment: wait for the request line.
        wait_until(lambda: _register_lines(server.log()))
        time.sleep(0.3)  # then for any line that would follow it
        packets = _drain(receiver)
    finally:
        receiver.close()
    log = server.log()
    records = _records(log)
    disconnects = [r for r in records if r["msg"].startswith("client disconnected")]
    assert len(disconnects) == 1 and "exc" not in disconnects[0]
    assert disconnects[0]["level"] == "info"
    assert "Traceback" not in log and "Error handling" not in log
    assert [r["status"] for r in _register_lines(log)] == [499]
    assert "peregrine.http.v1.auth.register.post.499:1|c" in packets
    assert not any(".500:" in p for p in packets), packets
