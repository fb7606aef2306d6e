"""Stock ``gevent`` worker vs ``GeventHTTPWorker``: same bytes, same outcome.

Each case is sent as raw bytes to both workers (one gunicorn each, the echo
app behind) and the outcomes are compared: status codes, what the app saw of
the environ, and whether the connection was closed. Where our worker is
deliberately stricter, the case says what each worker answers and why.
"""

import socket

import pytest

from .conftest import exchange, read_responses

H = b"Host: t\r\n"


def _get(target=b"/", version=b"HTTP/1.1", headers=b""):
    return b"GET " + target + b" " + version + b"\r\n" + H + headers + b"\r\n"


def _post(body, headers=b"", target=b"/"):
    return (b"POST " + target + b" HTTP/1.1\r\n" + H + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _chunked(chunks, headers=b"", target=b"/", trailer=b""):
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return (b"POST " + target + b" HTTP/1.1\r\n" + H + headers
            + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n")


def _many_headers(count):
    return b"".join(b"X-H%d: v\r\n" % i for i in range(count))


# (id, raw request bytes, number of final responses expected)
VALID = [
    ("get-query-escapes", _get(b"/a%20b/%C3%A9?x=1&y=%20#frag"), 1),
    ("post-content-length", _post(b'{"a": 1}', b"Content-Type: application/json\r\n"), 1),
    ("post-empty-body", _post(b""), 1),
    ("chunked", _chunked([b"hello ", b"world"]), 1),
    ("chunked-extension-trailer",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;name=v\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", 1),
    ("chunked-readline", _chunked([b"ab\nc", b"d\nef"], target=b"/readline"), 1),
    ("pipelined", _get(b"/1") + _post(b"xyz", target=b"/2")
     + _get(b"/3", headers=b"Connection: close\r\n"), 3),
    ("pipelined-after-unread-body", _post(b"abcde", target=b"/noread") + _get(b"/next"), 2),
    ("http10", _get(version=b"HTTP/1.0"), 1),
    ("http10-keep-alive", _get(version=b"HTTP/1.0", headers=b"Connection: keep-alive\r\n"), 1),
    ("connection-close", _get(headers=b"Connection: close\r\n"), 1),
    ("stream-response", _get(b"/stream"), 1),
    ("repeated-header-joined", _get(headers=b"X-A: 1\r\nX-A: 2\r\n"), 1),
    ("underscore-header-dropped", _get(headers=b"X_Under: 1\r\n"), 1),
    ("value-whitespace-trimmed", _get(headers=b"X-W:   v w  \r\n"), 1),
    ("obs-text-value", _get(headers=b"X-O: caf\xe9\r\n"), 1),
    ("absolute-form", _get(b"http://example.com/p/q?x=1"), 1),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 1),
    ("forwarded-proto-from-trusted-peer", _get(headers=b"X-Forwarded-Proto: https\r\n"), 1),
    ("header-near-field-limit", _get(headers=b"X-Big: " + b"v" * 8100 + b"\r\n"), 1),
    ("fields-at-limit", _get(headers=_many_headers(99)), 1),
    ("request-line-near-limit", _get(b"/" + b"a" * 4000), 1),
    ("leading-empty-line", b"\r\n" + _get(), 1),
]

# (id, raw request bytes, stock status, our status)
INVALID = [
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 400),
    ("double-cl-same", b"POST / HTTP/1.1\r\n" + H
     + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, 400),
    ("double-cl-different", b"POST / HTTP/1.1\r\n" + H
     + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, 400),
    ("cl-not-a-number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3x\r\n\r\nabc", 400, 400),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, 400),
    ("cl-plus-sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400, 400),
    ("te-gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", 400, 400),
    ("te-chunked-twice", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 400),
    ("te-chunked-http10", b"POST / HTTP/1.0\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 400),
    ("bare-lf-in-headers", b"GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", 400, 400),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400, 400),
    ("nul-in-value", _get(headers=b"X: a\x00b\r\n"), 400, 400),
    ("control-char-in-value", _get(headers=b"X: a\x01b\r\n"), 400, 400),
    ("del-in-value", _get(headers=b"X: a\x7fb\r\n"), 400, 400),
    ("obs-fold", _get(headers=b"X: a\r\n b\r\n"), 400, 400),
    ("space-before-colon", _get(headers=b"X : a\r\n"), 400, 400),
    ("lowercase-method", b"get / HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("method-bad-char", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("control-char-in-target", _get(b"/a\x01b"), 400, 400),
    ("non-ascii-target", _get(b"/a\xffb"), 400, 400),
    ("target-not-origin-form", _get(b"a/b"), 400, 400),
    ("asterisk-outside-options", _get(b"*"), 400, 400),
    ("http-2.0-version", _get(version=b"HTTP/2.0"), 400, 400),
    ("request-line-too-long", _get(b"/" + b"a" * 5000), 414, 414),
    ("too-many-headers", _get(headers=_many_headers(101)), 431, 431),
    ("header-field-too-large", _get(headers=b"X-Big: " + b"v" * 9000 + b"\r\n"), 431, 431),
    ("duplicate-host", _get(headers=b"Host: u\r\n"), 400, 400),
    ("unknown-expectation", _get(headers=b"Expect: teapot\r\n"), 417, 417),
    ("bad-chunk-size", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, 400),
    ("app-raises", _get(b"/raise"), 500, 500),
    # A chunk-size line gets limit_request_field_size bytes in both workers.
    ("chunk-extension-too-long", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n5;" + b"e" * 20000 + b"\r\nhello\r\n0\r\n\r\n",
     400, 400),
    # Deliberately stricter: a Content-Length past 2**63 - 1 is no real body
    # (the compiled parser cannot even count it); the stock worker hands it
    # to the app, which here does not read the body.
    ("cl-past-int64", b"POST /noread HTTP/1.1\r\n" + H
     + b"Content-Length: 9223372036854775808\r\n\r\nabc", 200, 413),
    ("cl-max-uint64", b"POST /noread HTTP/1.1\r\n" + H
     + b"Content-Length: 18446744073709551615\r\n\r\n", 200, 413),
    # Deliberately stricter. gunicorn decodes only "chunked" and hands the
    # app a still-gzipped body; a proxy that knows gzip frames it otherwise.
    ("te-gzip-then-chunked", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 200, 400),
    # Deliberately stricter: llhttp accepts only registered method names;
    # gunicorn passes any upper-case token to the app.
    ("unregistered-method", b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 200, 400),
    # Deliberately stricter: no tunnels here; the stock worker hands CONNECT
    # to the app and then treats the connection as a tunnel.
    ("connect", b"CONNECT t:443 HTTP/1.1\r\n" + H + b"\r\n", 200, 400),
]


def _echo(response):
    """The parts of an echo a worker decides; X-Pid differs by design."""
    if response.status != 200:
        return response.status
    return response.status, response.json()


@pytest.mark.parametrize("raw, count", [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_requests_get_the_same_answers(stock_server, our_server, raw, count):
    stock, stock_closed = exchange(stock_server.port, raw, count)
    ours, our_closed = exchange(our_server.port, raw, count)
    assert len(ours) == count
    assert [_echo(r) for r in ours] == [_echo(r) for r in stock]
    assert our_closed == stock_closed


@pytest.mark.parametrize("raw, stock_status, our_status",
                         [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_requests_are_refused_and_closed(stock_server, our_server, raw,
                                                  stock_status, our_status):
    stock, stock_closed = exchange(stock_server.port, raw)
    ours, our_closed = exchange(our_server.port, raw)
    assert [r.status for r in stock] == [stock_status]
    assert [r.status for r in ours] == [our_status]
    if our_status >= 400:
        assert our_closed
        error = ours[0].json()
        assert error["request_id"] == ours[0].headers["x-request-id"]
        assert ours[0].headers["content-type"] == "application/json"
        assert set(error["error"]) == {"code", "message"}


def test_keep_alive_serves_sequential_requests_on_one_connection(stock_server, our_server):
    outcomes = []
    for server in (stock_server, our_server):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            echoes = []
            for path in (b"/one", b"/two"):
                sock.sendall(_get(path))
                responses, closed = read_responses(sock, 1, linger=0.05)
                assert not closed
                echoes.append(_echo(responses[0]))
            outcomes.append(echoes)
    assert outcomes[0] == outcomes[1]


def test_expect_100_continue_is_answered_before_the_body(stock_server, our_server):
    head = (b"POST /p HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
            b"Content-Length: 5\r\n\r\n")
    echoes = []
    for server in (stock_server, our_server):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head)
            assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            responses, closed = read_responses(sock, 1, linger=0.05)
            assert not closed
            echoes.append(_echo(responses[0]))
    assert echoes[0] == echoes[1]
    assert echoes[1][1]["body"] == "hello"
