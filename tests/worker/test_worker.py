"""GeventHTTPWorker keeps what gunicorn's worker machinery promises."""

import json
import signal
import socket
import threading
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


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone while we read it
        return False


def test_recycled_worker_exits_at_once(server_factory):
    # gunicorn's loop looks at `alive` once a second; ours is woken by the
    # request that reaches max_requests, so the replacement boots sooner.
    server = server_factory("--max-requests", "2", "--max-requests-jitter", "0")
    last = exchange(server.port, _get(b"/", b"Connection: close\r\n"))[0][0]
    pid = int(last.headers["x-pid"])
    started = time.monotonic()
    while _running(pid) and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert time.monotonic() - started < 0.5


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
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        # Nothing was answered yet: the worker says why before closing.
        responses, closed = read_responses(sock, 1, timeout=5)
        assert time.monotonic() - started < 4
    assert [r.status for r in responses] == [408] and closed
    assert responses[0].json()["error"]["code"] == "request_timeout"


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


# -- a trickled body is cut off as a whole (reliability.md A2/B5) -----------


def _trickle(port, path, interval=0.25, limit=8.0):
    """POST a 60000-byte body one byte per ``interval``; stop when answered.

    Returns (seconds until the server closed, bytes it sent, closed).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Length: 60000\r\n\r\n")
        received = b""
        while time.monotonic() - started < limit:
            try:
                sock.sendall(b"x")
            except OSError:
                pass  # closed on us: what is left to read says why
            sock.settimeout(interval)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return time.monotonic() - started, received, True
            if not data:
                return time.monotonic() - started, received, True
            received += data
        return time.monotonic() - started, received, False


def _status_and_envelope(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_trickled_body_gets_408_within_the_timeout(server_factory):
    # --timeout 2: each connection gets 2 s of waiting for its whole body. A
    # byte every 0.25 s used to restart a per-read timeout for ever.
    server = server_factory("--timeout", "2")
    results = [None] * 20

    def run(i):
        results[i] = _trickle(server.port, b"/")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    for elapsed, raw, closed in results:
        assert closed and elapsed < 4, (elapsed, raw[:200])
        status, headers, body = _status_and_envelope(raw)
        # The echo app never saw the partial body as a whole one (it would
        # have answered 200 with it).
        assert status == 408, raw[:300]
        assert headers["connection"] == "close"
        envelope = json.loads(body)
        assert envelope["error"]["code"] == "request_timeout"
        assert envelope["request_id"] == headers["x-request-id"]
    log = server.stop()
    assert "Traceback" not in log
    # One line per connection.
    assert log.count("request body not received within 2s") == len(results), log


def test_a_trickled_body_the_app_left_unread_is_cut_off(server_factory):
    # /noread answers at once; keeping the connection means draining the
    # body, which gets the same budget: then the connection just closes.
    server = server_factory("--timeout", "2")
    elapsed, raw, closed = _trickle(server.port, b"/noread")
    assert closed and elapsed < 4
    status, headers, _ = _status_and_envelope(raw)
    assert status == 200
    log = server.stop()
    assert "Traceback" not in log
    assert log.count("Request body timed out from ip=127.0.0.1") == 1, log


def test_a_body_arriving_steadily_within_the_timeout_is_served(server_factory):
    server = server_factory("--timeout", "2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":  # 1.5 s in all, under the 2 s budget
            time.sleep(0.25)
            sock.sendall(bytes([byte]))
        responses, _ = read_responses(sock, 1, timeout=5)
    assert [r.status for r in responses] == [200]
    assert responses[0].json()["body"] == "abcdef"


# -- chunk extensions are bounded (CVE-2024-22019 class) ---------------------


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server stopped reading and closed: expected


def test_an_endless_chunk_extension_is_refused_with_400(our_server):
    # The abuse run's request: it used to be read in full and handed on.
    raw = (b"POST /v1/auth/refresh HTTP/1.1\r\nHost: t\r\n"
           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"15;" + b"e" * (8 << 20) + b'\r\n{"refresh_token":"x"}\r\n0\r\n\r\n')
    with socket.create_connection(("127.0.0.1", our_server.port), timeout=5) as sock:
        started = time.monotonic()
        sender = threading.Thread(target=_send_quietly, args=(sock, raw), daemon=True)
        sender.start()
        responses, closed = read_responses(sock, 1, timeout=5)
        elapsed = time.monotonic() - started
    assert [r.status for r in responses] == [400] and closed
    assert responses[0].headers["connection"] == "close"
    envelope = responses[0].json()
    assert envelope["error"] == {"code": "bad_request", "message": "chunk size line too long"}
    assert envelope["request_id"] == responses[0].headers["x-request-id"]
    assert elapsed < 3


def test_a_chunk_extension_within_the_limit_is_served(our_server):
    raw = (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;" + b"e" * 4000 + b"\r\nhello\r\n0\r\n\r\n")
    responses, _ = exchange(our_server.port, raw)
    assert [r.status for r in responses] == [200]
    assert responses[0].json()["body"] == "hello"


def test_request_hooks_set_in_a_config_run_for_every_request(tmp_path):
    """The worker skips gunicorn's default hooks, never ones a config sets."""
    calls = tmp_path / "calls"
    conf = tmp_path / "hooks.py"
    conf.write_text(
        f"def pre_request(worker, req):\n"
        f"    open({str(calls)!r}, 'a').write('pre ' + req.path + '\\n')\n"
        f"def post_request(worker, req, environ, resp):\n"
        f"    open({str(calls)!r}, 'a').write('post ' + req.path + ' ' + resp.status + '\\n')\n")
    server = Server(OURS, "-c", str(conf)).start()
    try:
        calls.write_text("")  # what the readiness probe made
        responses, _ = exchange(server.port, b"GET /hooked HTTP/1.1\r\nHost: t\r\n\r\n"
                                b"GET /again HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                count=2)
        assert [r.status for r in responses] == [200, 200]
    finally:
        server.stop()
    assert calls.read_text().splitlines() == [
        "pre /hooked", "post /hooked 200 OK", "pre /again", "post /again 200 OK"]


def test_a_kept_alive_connection_serves_the_next_request_in_pieces(our_server):
    """After an answer the worker waits for the socket before it reads:
    a next request trickled in byte runs, and one sent with its body
    split, are still read whole."""
    with socket.create_connection(("127.0.0.1", our_server.port), timeout=5) as sock:
        for n in range(3):
            sock.sendall(_get(b"/first"))
            assert [r.status for r in read_responses(sock, 1, linger=0.05)[0]] == [200]
            head = _get(b"/trickled/%d" % n, b"X-Run: " + b"r" * 40 + b"\r\n")
            for i in range(0, len(head), 9):
                sock.sendall(head[i:i + 9])
                time.sleep(0.01)
            responses, closed = read_responses(sock, 1, linger=0.05)
            assert not closed
            assert responses[0].json()["PATH_INFO"] == f"/trickled/{n}"
            assert responses[0].json()["headers"]["HTTP_X_RUN"] == "r" * 40
        sock.sendall(b"POST /split HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc")
        time.sleep(0.05)
        sock.sendall(b"def")
        responses, _ = read_responses(sock, 1, linger=0.05)
        assert responses[0].json()["body"] == "abcdef"


def test_a_client_leaving_after_an_answer_ends_its_connection_quietly(server_factory):
    server = server_factory()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(_get(b"/"))
            assert [r.status for r in read_responses(sock, 1, linger=0.01)[0]] == [200]
            sock.shutdown(socket.SHUT_WR)  # the worker is waiting for a next head
            assert _wait_for_eof(sock, 3) < 2
    responses, _ = exchange(server.port, _get(b"/after"))
    assert responses[0].status == 200
    errors = server.stop()
    assert "Traceback" not in errors and "Error handling" not in errors


def test_pipelined_requests_over_tls_are_all_answered(tmp_path):
    """TLS may hold decrypted requests the socket no longer shows as
    readable: those connections read without waiting for the socket."""
    import ssl

    from tests.support.nginx import self_signed_certificate

    self_signed_certificate(tmp_path)
    server = Server(OURS, "--certfile", str(tmp_path / "peregrine.crt"),
                    "--keyfile", str(tmp_path / "peregrine.key"))
    server._answers = lambda: True  # its plain-HTTP readiness probe cannot speak TLS
    server.start()
    context = ssl.create_default_context(cafile=str(tmp_path / "peregrine.crt"))
    context.check_hostname = False
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the TLS server did not listen"
                time.sleep(0.1)
        with context.wrap_socket(raw) as sock:
            for rounds in (1, 3):
                sock.sendall(b"".join(_get(b"/tls/%d" % i) for i in range(rounds)))
                responses, closed = read_responses(sock, rounds, linger=0.05)
                assert not closed
                assert [r.json()["PATH_INFO"] for r in responses] == [
                    f"/tls/{i}" for i in range(rounds)]
                assert responses[0].json()["wsgi.url_scheme"] == "https"
    finally:
        server.stop()
