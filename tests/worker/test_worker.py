"""GeventHTTPWorker keeps what gunicorn's worker machinery promises."""

import signal
import socket
import time

import pytest

from .conftest import OURS, Server, exchange, read_responses


@pytest.fixture(scope="module")
def impatient_server():
    """Heads get 1 s (keepalive), each body read or write 2 s (timeout)."""
    server = Server(OURS, "--keep-alive", "1", "--timeout", "2").start()
    yield server
    server.stop()


def _get(path, extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def _wait_for_eof(sock, limit):
    """Return seconds until the server closed ``sock`` (fail after limit)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        assert sock.recv(1024) == b""
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_term_lets_an_in_flight_request_finish(server_factory):
    server = server_factory("--graceful-timeout", "5")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_get(b"/sleep/1"))
        time.sleep(0.3)
        server.signal(signal.SIGTERM)
        responses, closed = read_responses(sock, 1, timeout=5)
    assert [r.status for r in responses] == [200]
    # Shutting down: the response says the connection ends with it.
    assert responses[0].headers["connection"] == "close"
    assert closed
    assert server.proc.wait(timeout=10) == 0


def test_max_requests_recycles_the_worker(server_factory):
    server = server_factory("--max-requests", "3", "--max-requests-jitter", "0")
    close = b"Connection: close\r\n"
    # The readiness probe was request 1; request 3 reaches max_requests.
    first = [exchange(server.port, _get(b"/", close))[0][0] for _ in range(2)]
    assert first[-1].headers["connection"] == "close"
    time.sleep(1.5)  # GeventWorker.run notices within a second, then exits
    after, _ = exchange(server.port, _get(b"/", close))
    assert first[0].headers["x-pid"] == first[1].headers["x-pid"]
    assert after[0].headers["x-pid"] != first[0].headers["x-pid"]


def test_last_request_before_recycling_closes_the_connection(server_factory):
    server = server_factory("--max-requests", "2", "--max-requests-jitter", "0")
    responses, closed = exchange(server.port, _get(b"/") + _get(b"/"), count=2)
    assert [r.headers["connection"] for r in responses] == ["close"]
    assert closed


def test_slow_request_head_is_cut_off(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        for _ in range(3):  # trickling bytes does not extend the deadline
            time.sleep(0.3)
            sock.sendall(b"X: y\r\n")
        assert _wait_for_eof(sock, 3) < 2


def test_idle_keep_alive_connection_is_closed(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as sock:
        sock.sendall(_get(b"/"))
        responses, closed = read_responses(sock, 1, linger=0.05)
        assert not closed
        assert _wait_for_eof(sock, 3) < 2


def test_keepalive_zero_still_bounds_request_heads(server_factory):
    server = server_factory("--keep-alive", "0")
    responses, closed = exchange(server.port, _get(b"/") + _get(b"/"), count=2)
    assert len(responses) == 1 and closed  # no keep-alive
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert _wait_for_eof(sock, 8) < 7  # FALLBACK_HEADER_TIMEOUT


def test_stalled_body_times_out(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert _wait_for_eof(sock, 5) < 4


def test_access_log_line_is_written(server_factory, tmp_path):
    log = tmp_path / "access.log"
    server = server_factory("--access-logfile", str(log))
    exchange(server.port, _get(b"/logged?q=1", b"User-Agent: probe\r\n"))
    deadline = time.monotonic() + 3
    while "/logged" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.05)
    line = next(x for x in log.read_text().splitlines() if "/logged" in x)
    assert '"GET /logged?q=1 HTTP/1.1" 200' in line
    assert '"probe"' in line


def test_body_limit_for_draining_closes_instead(our_server):
    # 1 MiB announced, not read by the app: reading it all to reuse the
    # connection is not worth it, so the worker answers and closes.
    raw = b"POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\nabc"
    responses, closed = exchange(our_server.port, raw)
    assert [r.status for r in responses] == [200]
    assert responses[0].headers["connection"] == "close"
    assert closed
