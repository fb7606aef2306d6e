"""``_http_py`` and ``_http_c`` agree: same environ, same errors, same bytes.

Every request is also fed split at arbitrary points, since the socket may
hand the parser any fragment of it.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpath import _http_py, http
from tests.support import twins

_http_c = twins.compiled("http")
TWINS = twins.params("http")
LIMITS = (4094, 100, 8190)
TEMPLATE = {"SCRIPT_NAME": "", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"}
SCHEME_HEADERS = {"X-FORWARDED-PROTO": "https"}


def parse(twin, raw, splits=()):
    """Feed ``raw`` cut at ``splits``; return comparable outcome data."""
    parser = twin.RequestParser(dict(TEMPLATE), LIMITS, SCHEME_HEADERS, "drop")
    start = 0
    for cut in sorted(set(splits)) + [len(raw)]:
        parser.feed(raw[start:cut])
        start = cut
    requests = [
        (r.environ, r.method, r.uri, r.path, r.query, r.version, r.headers,
         r.keep_alive, r.expect_continue, r.content_length, r.chunked,
         bytes(r.body), r.complete,
         r.body_error and (r.body_error.status, r.body_error.message))
        for r in parser.requests
    ]
    error = parser.error and (parser.error.status, parser.error.code, parser.error.message)
    return requests, error, parser.closed


RAW = [
    b"GET /a%20b?x=1#f HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-A: 2 \r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://h/x?y HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX_Drop: 1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nrest",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nExpect: nope\r\n\r\n",
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    b"GET / HTTP/1.1\r\nX: " + b"v" * 9000 + b"\r\n\r\n",
    b"CONNECT h:1 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"BREW / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\r\n",
    # Content-Length around 2**63: llhttp takes up to 2**64 - 1, the compiled
    # twin counts in a long long; both answer 413 past the largest it holds.
    b"POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 000000000000000000000009223372036854775808\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW)
def test_twins_parse_alike(raw):
    expected = parse(_http_py, raw)
    if _http_c is not None:
        assert parse(_http_c, raw) == expected
    # Byte-at-a-time feeding gives the same result as one feed.
    assert parse(_http_py, raw, range(1, len(raw))) == expected


@pytest.mark.parametrize("twin", TWINS)
def test_the_environ_is_what_wsgi_apps_expect(twin):
    (req,), error, closed = parse(twin, RAW[0])
    environ = req[0]
    assert error is None and not closed
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/a b"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["RAW_URI"] == "/a%20b?x=1#f"
    assert environ["HTTP_X_A"] == "1,2"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("length", [2**63, 2**64 - 1])
def test_a_content_length_past_int64_is_413(twin, length):
    requests, error, closed = parse(
        twin, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length)
    assert requests == [] and closed
    assert error == (413, "payload_too_large", "Content-Length too large")


@pytest.mark.parametrize("twin", TWINS)
def test_the_largest_content_length_is_taken(twin):
    (req,), error, closed = parse(
        twin, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\nab" % (2**63 - 1))
    assert error is None and not closed
    assert req[9] == 2**63 - 1 and req[11] == b"ab"


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                 min_size=1, max_size=20)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                        blacklist_characters="\x7f"), max_size=40)
_segment = st.text(alphabet="abcXYZ019-._~%!$&'()*+,;=:@", max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    segments=st.lists(_segment, max_size=4),
    query=st.one_of(st.none(), _segment),
    headers=st.lists(st.tuples(_token, _value), max_size=6),
    body=st.binary(max_size=40),
    chunked=st.booleans(),
    data=st.data(),
)
def test_twins_agree_on_generated_requests(segments, query, headers, body, chunked, data):
    target = "/" + "/".join(segments) + ("" if query is None else "?" + query)
    lines = [f"POST {target} HTTP/1.1", "Host: t"]
    lines += [f"{name}: {value}" for name, value in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        framed = body
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + framed
    splits = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=4))
    expected = parse(_http_py, raw)
    assert parse(_http_py, raw, splits) == expected
    if _http_c is not None:
        assert parse(_http_c, raw, splits) == expected


def _without_date(data):
    return re.sub(rb"Date: [^\r]*\r\n", b"", data)


def encode(twin, *args):
    try:
        head = twin.encode_response(*args)
    except (TypeError, ValueError) as ex:
        return type(ex).__name__
    return (_without_date(head.data), head.status_code, head.length, head.chunked,
            head.keep_alive, head.omit_body, head.body_sent)


RESPONSES = [
    ("200 OK", [("Content-Type", "application/json")], 1, True, False, b'{"a":1}'),
    ("200 OK", [("Content-Length", "3")], 1, True, False, b"abcdef"),
    ("200 OK", [], 1, True, False, None),
    ("200 OK", [], 0, True, False, None),
    ("200 OK", [("Content-Length", "5")], 1, True, True, b"hello"),
    ("204 No Content", [("Content-Length", "0")], 1, True, False, b""),
    ("304 Not Modified", [], 1, True, False, None),
    ("200 OK", [("Connection", "close"), ("Transfer-Encoding", "x"), ("X", " v ")],
     1, False, False, b"x"),
    ("200 OK", [("Bad Name", "v")], 1, True, False, b""),
    ("200 OK", [("X", "a\r\nb")], 1, True, False, b""),
    ("200 OK", [("X", "\u20ac")], 1, True, False, b""),
    ("200 OK", [(b"X", "v")], 1, True, False, b""),
    ("2000 OK", [], 1, True, False, b""),
    ("OK", [], 1, True, False, b""),
    (b"200 OK", [], 1, True, False, b""),
    ("200 OK", [("Content-Length", "-1")], 1, True, False, b""),
]


@pytest.mark.parametrize("args", RESPONSES)
def test_twins_encode_alike(args):
    expected = encode(_http_py, *args)
    if _http_c is not None:
        assert encode(_http_c, *args) == expected


@settings(max_examples=150, deadline=None)
@given(
    code=st.integers(100, 599),
    reason=st.text(alphabet=st.characters(min_codepoint=0x09, max_codepoint=0x17F), max_size=12),
    headers=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=5),
    minor=st.integers(0, 1),
    keep_alive=st.booleans(),
    head_request=st.booleans(),
    body=st.one_of(st.none(), st.binary(max_size=20)),
)
def test_twins_encode_generated_responses_alike(code, reason, headers, minor, keep_alive,
                                                head_request, body):
    args = (f"{code} {reason}", headers, minor, keep_alive, head_request, body)
    expected = encode(_http_py, *args)
    if _http_c is not None:
        assert encode(_http_c, *args) == expected


def test_single_chunk_body_rides_with_the_head():
    head = http.encode_response("200 OK", [("Content-Type", "text/plain")], 1, True,
                                False, b"hi")
    assert head.data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.data.endswith(b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
    assert head.keep_alive and not head.chunked


def test_error_envelope():
    data = http.error_response(http.HttpError(400, "bad_request", "nope"), "abc")
    head, body = data.split(b"\r\n\r\n", 1)
    head += b"\r\n"
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert b"\r\nX-Request-ID: abc\r\n" in head
    assert b"\r\nConnection: close\r\n" in head
    assert body == b'{"error":{"code":"bad_request","message":"nope"},"request_id":"abc"}'


def test_error_envelope_for_413():
    data = http.error_response(http.HttpError(413, "payload_too_large", "too big"), "abc")
    assert data.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert data.endswith(b'{"error":{"code":"payload_too_large","message":"too big"},'
                         b'"request_id":"abc"}')


# -- chunk-size lines and trailer sections are bounded (CVE-2024-22019 class) --

_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
#: Bytes a chunk-size line may hold before its LF: limit_request_field_size.
_LINE_LIMIT = LIMITS[2]
_SPLITS = [None, 1, 7, 4096, _LINE_LIMIT + 1, 65536]


def _line(length, size=b"5"):
    """A chunk-size line of ``length`` bytes before its LF (CR included)."""
    return size + b";" + b"e" * (length - len(size) - 2) + b"\r\n"


def _fed(twin, raw, step):
    parser = twin.RequestParser(dict(TEMPLATE), LIMITS, SCHEME_HEADERS, "drop")
    for start in range(0, len(raw), step or len(raw)):
        parser.feed(raw[start:start + (step or len(raw))])
    return parser


def _outcome(twin, raw, step):
    parser = _fed(twin, raw, step)
    return [(bytes(r.body), r.complete, r.body_error and (r.body_error.status, r.body_error.code,
                                                          r.body_error.message))
            for r in parser.requests], parser.error, parser.closed


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("step", _SPLITS)
def test_a_chunk_size_line_at_the_limit_is_taken(twin, step):
    raw = _CHUNKED_HEAD + _line(_LINE_LIMIT) + b"hello\r\n0\r\n\r\n"
    assert _outcome(twin, raw, step) == ([(b"hello", True, None)], None, False)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("step", _SPLITS)
def test_a_chunk_size_line_past_the_limit_is_400(twin, step):
    # Refused however the bytes arrive, also when the whole line (LF
    # included) is inside one read.
    raw = _CHUNKED_HEAD + _line(_LINE_LIMIT + 1) + b"hello\r\n0\r\n\r\n"
    assert _outcome(twin, raw, step) == (
        [(b"", False, (400, "bad_request", "chunk size line too long"))], None, True)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("step", [None, 65536])
def test_an_endless_chunk_extension_is_cut_off_early(twin, step):
    # The abuse run: "15;" + 8 MiB of "e" used to be scanned to the end and
    # the body handed to the app. Now llhttp stops within one line's worth.
    parser = twin.RequestParser(dict(TEMPLATE), LIMITS, SCHEME_HEADERS, "drop")
    parser.feed(_CHUNKED_HEAD + b"15;" + b"e" * 65536)
    (req,) = parser.requests
    assert parser.closed
    assert (req.body_error.status, req.body_error.message) == (400, "chunk size line too long")
    parser.feed(b"e" * (8 << 20) + b'\r\n{"refresh_token":"x"}\r\n0\r\n\r\n')
    assert not req.complete and req.body_received == 0


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("step", [None, 3, _LINE_LIMIT + 1])
def test_many_small_chunks_in_one_read_are_no_long_line(twin, step):
    # Framing of many chunks inside one piece must not add up to one line.
    raw = (_CHUNKED_HEAD + b"1;x=y\r\na\r\n" * 3000 + _line(_LINE_LIMIT) + b"hello\r\n"
           + b"0\r\n\r\n")
    assert _outcome(twin, raw, step) == ([(b"a" * 3000 + b"hello", True, None)], None, False)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("step", [None, 7, 65536])
def test_a_long_line_after_a_pipelined_request_is_measured_alone(twin, step):
    raw = (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
           + _CHUNKED_HEAD + _line(_LINE_LIMIT) + b"hello\r\n0\r\n\r\n")
    assert _outcome(twin, raw, step) == (
        [(b"abc", True, None), (b"hello", True, None)], None, False)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("step", [None, 65536])
def test_an_endless_trailer_section_is_cut_off(twin, step):
    raw = _CHUNKED_HEAD + b"1\r\na\r\n0\r\nX-T: " + b"v" * (2 << 20) + b"\r\n\r\n"
    assert _outcome(twin, raw, step) == (
        [(b"a", False, (431, "header_fields_too_large", "trailer section too large"))],
        None, True)


@pytest.mark.parametrize("raw", [
    _CHUNKED_HEAD + _line(_LINE_LIMIT + 1) + b"hello\r\n0\r\n\r\n",
    _CHUNKED_HEAD + b"3;a=b;c=\"d\"\r\nabc\r\n" + _line(100, b"2") + b"xy\r\n0\r\nT: 1\r\n\r\n",
])
def test_twins_agree_on_chunk_metadata_fed_byte_by_byte(raw):
    expected = parse(_http_py, raw)
    if _http_c is not None:
        assert parse(_http_c, raw) == expected
        assert parse(_http_c, raw, range(1, len(raw))) == expected
    assert parse(_http_py, raw, range(1, len(raw))) == expected


def test_error_envelope_for_408():
    data = http.error_response(http.HttpError(408, "request_timeout", "slow"), "abc")
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"\r\nConnection: close\r\n" in data
