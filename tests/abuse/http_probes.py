"""Raw-socket probes straight at gunicorn (no proxy in front).

Framing the server must refuse or read one way only (request smuggling),
heads and bodies over the limits, slow clients, and bodies that are JSON
in name only. Every probe must get the right 4xx with the JSON envelope or
a closed connection: never a 5xx, never a second answer to bytes smuggled
inside the first request, never a stuck worker (/healthz answers within 1 s
after each probe, on a new connection, and no worker was replaced).
"""

from __future__ import annotations

import time

import gevent

from tests.abuse.common import Client, Row, describe, envelope_problem, healthz_within, raw

HOST = b"Host: abuse\r\n"


def req(method: str, path: str, headers: list[str], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\n".encode() + HOST + b"".join(
        h.encode("latin-1") + b"\r\n" for h in headers) + b"\r\n"
    return head + body


# After each ambiguous request, a complete second request that only exists
# if the server framed the first body one way: it must never be answered.
SMUGGLED = b"GET /v1/smuggled HTTP/1.1\r\nHost: abuse\r\n\r\n"


def smuggling_cases(token: str) -> list[tuple[str, bytes, tuple[int, ...]]]:
    auth = f"Authorization: Bearer {token}"
    ctype = "Content-Type: application/json"
    body = b'{"refresh_token":"x"}'
    chunked_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return [
        # (name, bytes, acceptable statuses of the one answer)
        ("CL+TE (CL covers the smuggled request)",
         req("POST", "/v1/auth/refresh", [ctype, f"Content-Length: {len(chunked_body) + len(SMUGGLED)}",
                                          "Transfer-Encoding: chunked"], chunked_body + SMUGGLED),
         (400,)),
        ("TE+CL (TE first, CL short)",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked",
                                          "Content-Length: 4"], chunked_body + SMUGGLED),
         (400,)),
        ("duplicate Content-Length, different values",
         req("POST", "/v1/auth/refresh", [ctype, f"Content-Length: {len(body)}",
                                          f"Content-Length: {len(body) + len(SMUGGLED)}"],
             body + SMUGGLED), (400,)),
        ("Content-Length list '21, 64'",
         req("POST", "/v1/auth/refresh", [ctype, f"Content-Length: {len(body)}, {len(body) + 43}"],
             body + SMUGGLED), (400,)),
        ("Transfer-Encoding: chunked, identity",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked, identity"],
             chunked_body + SMUGGLED), (400, 501)),
        ("Transfer-Encoding: identity, chunked + CL",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: identity, chunked",
                                          f"Content-Length: {len(chunked_body) + len(SMUGGLED)}"],
             chunked_body + SMUGGLED), (400, 501)),
        ("Transfer-Encoding twice (chunked / identity)",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked",
                                          "Transfer-Encoding: identity"], chunked_body + SMUGGLED),
         (400, 501)),
        ("Transfer-Encoding: xchunked + CL",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: xchunked",
                                          f"Content-Length: {len(chunked_body)}"],
             chunked_body + SMUGGLED), (400, 501)),
        ("space before colon: 'Transfer-Encoding : chunked' + CL",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding : chunked",
                                          f"Content-Length: {len(chunked_body) + len(SMUGGLED)}"],
             chunked_body + SMUGGLED), (400,)),
        ("obs-fold Transfer-Encoding + CL",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding:\r\n chunked",
                                          f"Content-Length: {len(chunked_body) + len(SMUGGLED)}"],
             chunked_body + SMUGGLED), (400,)),
        ("obs-fold in an ordinary header",
         req("GET", "/healthz", ["X-Folded: a\r\n b"]), (400,)),
        ("bare LF line endings",
         b"GET /healthz HTTP/1.1\nHost: abuse\nX-A: b\n\n", (400,)),
        ("bare LF inside a header hiding TE",
         req("POST", "/v1/auth/refresh", [ctype, "X-A: b\nTransfer-Encoding: chunked",
                                          f"Content-Length: {len(chunked_body) + len(SMUGGLED)}"],
             chunked_body + SMUGGLED), (400,)),
        ("bare CR in a header value",
         req("GET", "/healthz", ["X-A: b\rc"]), (400,)),
        ("chunk-size with extensions (valid, RFC 9112 7.1.1)",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"%x;name=value;x=\"q\"\r\n%s\r\n0\r\n\r\n" % (len(body), body)) + SMUGGLED,
         (401,)),  # the body is read and refused by the app; then the next request is real
        ("chunk-size overflow (2**72)",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"1000000000000000000\r\n" + body + b"\r\n0\r\n\r\n" + SMUGGLED), (400, 413)),
        ("chunk-size negative",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"-15\r\n" + body + b"\r\n0\r\n\r\n" + SMUGGLED), (400,)),
        ("chunk-size 0x prefix",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"0x15\r\n" + body + b"\r\n0\r\n\r\n" + SMUGGLED), (400,)),
        ("chunk data longer than its size",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"5\r\n" + body + b"\r\n0\r\n\r\n" + SMUGGLED), (400,)),
        ("chunk extension of 100 KiB",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"15;" + b"e" * 102400 + b"\r\n" + body + b"\r\n0\r\n\r\n" + SMUGGLED),
         (400, 413, 431)),
        ("Content-Length: +21",
         req("POST", "/v1/auth/refresh", [ctype, f"Content-Length: +{len(body)}"], body + SMUGGLED),
         (400,)),
        ("Content-Length: 2**70",
         req("POST", "/v1/auth/refresh", [ctype, "Content-Length: 1180591620717411303424"], body),
         (400, 413)),
        ("HTTP/1.0 with Transfer-Encoding",
         b"POST /v1/auth/refresh HTTP/1.0\r\n" + HOST + b"Content-Type: application/json\r\n"
         b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % (len(chunked_body) + len(SMUGGLED))
         + chunked_body + SMUGGLED, (400,)),
        ("GET with a body smuggling a request (CL)",
         req("GET", "/healthz", [f"Content-Length: {len(SMUGGLED)}"], SMUGGLED), (200,)),
        ("absolute-form target to another host",
         b"GET http://evil.example/healthz HTTP/1.1\r\nHost: abuse\r\n\r\n", (200, 400)),
        ("two Host headers", req("GET", "/healthz", ["Host: other"]), (400,)),
        ("NUL in a header value", req("GET", "/healthz", ["X-A: a\x00b"]), (400,)),
        # RFC 9112 3: a recipient MAY split the request line on any whitespace.
        ("request line with 2 spaces", b"GET  /healthz HTTP/1.1\r\nHost: abuse\r\n\r\n",
         (200, 400)),
        ("HTTP/2.0 version on an HTTP/1 line", b"GET /healthz HTTP/2.0\r\nHost: abuse\r\n\r\n",
         (400, 505)),
        ("auth header + smuggled body on a GET route",
         req("GET", "/v1/users/me", [auth, "Transfer-Encoding: chunked"],
             b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)), (200,)),
    ]


def limit_cases() -> list[tuple[str, bytes, tuple[int, ...]]]:
    ctype = "Content-Type: application/json"
    many = [f"X-H{n}: v" for n in range(150)]
    inside = b" " * 65536 + SMUGGLED + b" " * 100
    big_chunks = b"".join(b"4000\r\n" + b" " * 0x4000 + b"\r\n" for _ in range(4)) \
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED) + 100, SMUGGLED + b" " * 100)
    return [
        ("request line of 8 KiB", b"GET /healthz?" + b"a" * 8192 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
         (414, 400)),
        ("request line of 1 MiB", b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n" + HOST + b"\r\n",
         (414, 400)),
        ("150 header fields", req("GET", "/healthz", many), (431, 400)),
        ("one header of 9 KiB", req("GET", "/healthz", ["X-Big: " + "v" * 9216]), (431, 400)),
        ("header name of 9 KiB", req("GET", "/healthz", ["X" * 9216 + ": v"]), (431, 400)),
        ("64 KiB + 1 declared, no body sent",
         req("POST", "/v1/auth/refresh", [ctype, f"Content-Length: {65537}"]), (413,)),
        # Over-limit bodies carry a request just past 64 KiB: answering 413 and
        # keeping the connection may be fine, reading that request is not.
        ("80 KiB declared and sent",
         req("POST", "/v1/auth/refresh", [ctype, f"Content-Length: {81920}"],
             inside.ljust(81920)), (413,)),
        ("80 KiB chunked", req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
                               big_chunks), (413,)),
        ("a single chunk over 64 KiB",
         req("POST", "/v1/auth/refresh", [ctype, "Transfer-Encoding: chunked"],
             b"%x\r\n%s\r\n0\r\n\r\n" % (len(inside), inside)), (413,)),
    ]


def body_cases(token: str) -> list[tuple[str, str, bytes, tuple[int, ...]]]:
    """(name, path, JSON-ish body, statuses) for POSTs with a valid token."""
    deep_list = b"[" * 10000 + b"]" * 10000
    deep_obj = b'{"a":' * 10000 + b"1" + b"}" * 10000
    item = '{"product_id":"00000000-0000-4000-8000-000000000000","quantity":1}'
    addr = '{"line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}'
    return [
        ("invalid UTF-8 in a string", "/v1/orders",
         b'{"items":[],"shipping_address":{"line1":"\xff\xfe","city":"x","postal_code":"1",'
         b'"country":"US"}}', (400, 422)),
        ("invalid UTF-8 (overlong /)", "/v1/auth/login",
         b'{"email":"a\xc0\xafb@example.test","password":"12345678"}', (400, 422)),
        ("lone surrogate escape", "/v1/auth/register",
         b'{"email":"a@example.test","password":"12345678","name":"\\ud800"}', (400, 422)),
        ("UTF-8 BOM before the JSON", "/v1/auth/refresh", b'\xef\xbb\xbf{"refresh_token":"x"}',
         (400, 401)),
        ("JSON nested 10k deep (arrays)", "/v1/orders", deep_list, (400, 422)),
        ("JSON nested 10k deep (objects)", "/v1/orders", deep_obj, (400, 413, 422)),
        ("JSON nested 10k deep in a field", "/v1/orders",
         b'{"items":' + deep_list + b',"shipping_address":' + addr.encode() + b"}", (400, 422)),
        ("quantity 1e400", "/v1/orders",
         f'{{"items":[{item.replace(":1}", ":1e400}")}],"shipping_address":{addr}}}'.encode(),
         (400, 422)),
        ("quantity 2**70", "/v1/orders",
         f'{{"items":[{item.replace(":1}", f":{2**70}}}")}],"shipping_address":{addr}}}'.encode(),
         (422,)),
        ("quantity -1e400", "/v1/orders",
         f'{{"items":[{item.replace(":1}", ":-1e400}")}],"shipping_address":{addr}}}'.encode(),
         (400, 422)),
        ("quantity 1e-400", "/v1/orders",
         f'{{"items":[{item.replace(":1}", ":1e-400}")}],"shipping_address":{addr}}}'.encode(),
         (400, 422)),
        ("NaN literal", "/v1/orders",
         f'{{"items":[{item.replace(":1}", ":NaN}")}],"shipping_address":{addr}}}'.encode(),
         (400,)),
        ("10k-element array of zeros", "/v1/orders",
         b'{"items":[' + b",".join([b"0"] * 10000) + b'],"shipping_address":' + addr.encode() + b"}",
         (422,)),
        ("10k order lines (over 64 KiB)", "/v1/orders",
         f'{{"items":[{",".join([item] * 10000)}],"shipping_address":{addr}}}'.encode(), (413,)),
        ("1000 order lines (under 64 KiB)", "/v1/orders",
         f'{{"items":[{",".join([item] * 900)}],"shipping_address":{addr}}}'.encode(), (422,)),
        ("10k keys in an object", "/v1/orders",
         b"{" + b",".join(b'"k%d":0' % n for n in range(6000)) + b"}", (422,)),
        ("trailing garbage after JSON", "/v1/auth/refresh", b'{"refresh_token":"x"} x', (400,)),
        ("two JSON documents", "/v1/auth/refresh", b'{"refresh_token":"x"}{"a":1}', (400,)),
        ("empty body", "/v1/auth/refresh", b"", (400, 422)),
        ("JSON null", "/v1/auth/refresh", b"null", (400, 422)),
        ("JSON string", "/v1/auth/refresh", b'"x"', (400, 422)),
        ("a 60 KiB string", "/v1/auth/refresh",
         b'{"refresh_token":"' + b"x" * 61000 + b'"}', (401, 422)),
    ]


class Watch:
    """A client asking /healthz every 50 ms for as long as the probes run."""

    def __init__(self, port: int):
        self.port, self.worst, self.failures, self.count = port, 0.0, 0, 0
        self._running = True
        self._greenlet = gevent.spawn(self._loop)

    def _loop(self):
        while self._running:
            started = time.monotonic()
            try:
                ok = Client(self.port, 5).call("GET", "/healthz")[0] == 200
            except OSError:
                ok = False
            took = time.monotonic() - started
            self.count += 1
            self.worst = max(self.worst, took)
            self.failures += not ok
            gevent.sleep(0.05)

    def stop(self):
        self._running = False
        self._greenlet.join(10)


def judge(row: Row, port: int, name: str, ex, allowed: tuple[int, ...], *, expect_close: bool,
          second_ok: bool = False) -> None:
    problems = []
    if not ex.responses:
        if not ex.closed:
            problems.append("no answer and the connection stayed open")
        elif ex.leftover:
            problems.append("unparsable answer")
    else:
        first = ex.responses[0]
        if first.status >= 500 and first.status not in allowed:
            problems.append(f"{first.status}")
        elif first.status not in allowed:
            problems.append(f"status {first.status}, expected {allowed}")
        if first.status >= 400:
            problem = envelope_problem(first.status, first.headers, first.body)
            if problem:
                problems.append(problem)
        if len(ex.responses) > 1 and not second_ok:
            problems.append(f"{len(ex.responses)} answers: a smuggled request was served "
                            f"({ex.responses[1].status})")
        if expect_close and first.status >= 400 and first.status in allowed and not ex.closed:
            problems.append("connection left open after the error")
    took = healthz_within(port, 1.0)
    if took is None:
        problems.append("/healthz did not answer within 1 s afterwards")
    row.case(not problems, f"{name}: {'; '.join(problems)} [{describe(ex)}]")


def run(stack, user: dict, log_path) -> list[Row]:
    port = stack.port
    workers_before = set(stack.workers())
    watch = Watch(port)
    slow_rows = [Row("http: slowloris (heads and bodies)")]
    slow = gevent.spawn(slowloris, port, slow_rows[0])

    smuggling = Row("http: smuggling/framing -> 400 + close")
    for name, payload, allowed in smuggling_cases(user["access"]):
        ex = raw(port, payload, timeout=5, read_for=2.5)
        # Two probes frame the body correctly and pipeline SMUGGLED after it on purpose.
        second_ok = name.startswith(("chunk-size with extensions", "chunk extension"))
        judge(smuggling, port, name, ex, allowed, expect_close=not name.startswith("chunk-size with"),
              second_ok=second_ok)
        if second_ok and len(ex.responses) == 2 and ex.responses[1].status != 404:
            smuggling.failures.append(f"{name}: the pipelined request got "
                                      f"{ex.responses[1].status}")

    limits = Row("http: oversized line/headers/body -> 4xx")
    for name, payload, allowed in limit_cases():
        ex = raw(port, payload, timeout=5, read_for=3)
        judge(limits, port, name, ex, allowed, expect_close=name.startswith(("request", "150",
                                                                             "one header", "header")))

    bodies = Row("http: hostile JSON bodies -> 4xx")
    auth = f"Authorization: Bearer {user['access']}"
    for name, path, body, allowed in body_cases(user["access"]):
        payload = req("POST", path, ["Content-Type: application/json", auth,
                                     f"Content-Length: {len(body)}", "Connection: close",
                                     f"X-Real-IP: 10.77.0.{len(bodies.failures) + bodies.cases + 1}"],
                      body)
        ex = raw(port, payload, timeout=10, read_for=8)
        judge(bodies, port, name, ex, allowed, expect_close=False)
    # Query strings get the same numbers.
    for name, path in (("?limit=1e400", "/v1/products?limit=1e400"),
                       ("?limit=2**70", f"/v1/products?limit={2**70}"),
                       ("?min_price=1e400", "/v1/products?min_price=1e400"),
                       ("?max_price=-2**70", f"/v1/products?max_price=-{2**70}"),
                       ("?min_price=NaN", "/v1/products?min_price=NaN"),
                       ("?q= of 10k chars", "/v1/products?q=" + "a" * 3000),
                       ("?cursor invalid UTF-8", "/v1/products?cursor=%ff%fe"),
                       ("?category=%00", "/v1/products?category=%00"),
                       ("?limit repeated", "/v1/products?limit=1&limit=2"),
                       ("10k query params", "/v1/products?" + "&".join(f"a{n}=1" for n in range(600)))):
        ex = raw(port, req("GET", path, ["Connection: close"]), timeout=5, read_for=4)
        judge(bodies, port, name, ex, (400, 414, 422), expect_close=False)

    slow.join(60)
    if not slow.dead:
        slow.kill()
        slow_rows[0].case(False, "the slowloris probes did not finish within 60 s")
    watch.stop()
    slow_rows[0].case(watch.failures == 0 and watch.worst < 1.0,
                      f"other clients meanwhile: {watch.failures} of {watch.count} /healthz failed,"
                      f" slowest {watch.worst:.2f}s")
    slow_rows[0].note = f"{watch.count} /healthz meanwhile, slowest {watch.worst * 1000:.0f} ms"

    health = Row("http: no worker replaced by the probes")
    workers_after = set(stack.workers())
    health.case(workers_after == workers_before,
                f"workers replaced during the probes: {sorted(workers_before)} -> "
                f"{sorted(workers_after)}")
    return [smuggling, limits, bodies, *slow_rows, health]


def slowloris(port: int, row: Row) -> None:
    """Slow heads are cut after ``keepalive`` (5 s) for the whole head; slow
    bodies after ``timeout`` (30 s) without progress. A body trickled one
    byte a second must be cut too: the server promises a time bound per
    request, not per byte; 35 s is allowed for it."""
    import socket

    def hold(name, head: bytes, trickle: bytes, every: float, limit: float, count: int = 1):
        socks = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head)
            socks.append(s)
        started = time.monotonic()
        open_socks = list(socks)
        closed_at = []
        while open_socks and time.monotonic() - started < limit + 5:
            for s in list(open_socks):
                try:
                    if trickle:
                        s.sendall(trickle)
                    s.settimeout(0.001)
                    data = s.recv(65536)
                    if data == b"" or data:
                        # an answer or EOF: the server cut it (an answer is a 408/400)
                        open_socks.remove(s)
                        closed_at.append(time.monotonic() - started)
                except TimeoutError:
                    pass
                except OSError:
                    open_socks.remove(s)
                    closed_at.append(time.monotonic() - started)
            gevent.sleep(every)
        for s in socks:
            s.close()
        worst = max(closed_at, default=0.0)
        row.case(not open_socks and worst <= limit,
                 f"{name}: {len(open_socks)} of {count} still open after {limit + 5:.0f}s"
                 if open_socks else f"{name}: closed after {worst:.1f}s, limit {limit:.0f}s")

    jobs = [
        gevent.spawn(hold, "50 heads, a header byte every 0.5 s",
                     b"GET /healthz HTTP/1.1\r\nHost: abuse\r\nX-Slow: ", b"a", 0.5, 7.0, 50),
        gevent.spawn(hold, "50 heads sent to the last CRLF, then silence",
                     b"GET /healthz HTTP/1.1\r\nHost: abuse\r\nX-Slow: a\r\n", b"", 0.5, 7.0, 50),
        gevent.spawn(hold, "20 bodies stalled after 10 of 1000 bytes",
                     b"POST /v1/auth/refresh HTTP/1.1\r\nHost: abuse\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"refresh_", b"", 0.5, 32.0, 20),
        gevent.spawn(hold, "20 bodies trickled a byte a second",
                     b"POST /v1/auth/refresh HTTP/1.1\r\nHost: abuse\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 60000\r\n\r\n{\"refresh_token\":\"", b"x", 1.0, 35.0, 20),
    ]
    gevent.joinall(jobs, timeout=50)
