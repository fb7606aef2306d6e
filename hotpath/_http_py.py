"""HTTP/1.1 glue for the gevent worker: the pure-Python reference twin.

CPU only: nothing here touches a socket. ``RequestParser`` receives llhttp's
callbacks (through ``httptools``), checks what llhttp lets through but a
proxy in front of us could read differently, and builds each request's WSGI
environ. ``encode_response`` turns a WSGI status and header list (and the
body, when the application returned it in one piece) into the bytes the
worker writes with a single ``sendall``.

``hotpath/_http_c.pyx`` is the compiled twin with the same API. Both raise
``hotpath._http_errors.HttpError``; the error envelope (not on the hot path)
lives here only.
"""

import json
import re
import secrets
import time
from collections import deque
from email.utils import formatdate
from urllib.parse import unquote_to_bytes, urlsplit

import httptools

from hotpath._http_errors import HttpError

__all__ = (
    "HttpError",
    "Request",
    "RequestParser",
    "ResponseHead",
    "encode_response",
    "error_response",
    "http_date",
    "new_request_id",
    "new_traceparent",
)

#: The largest request line accepted when ``limit_request_line`` is 0
#: ("unlimited" in gunicorn's docs); a bound is still needed for memory.
UNLIMITED_REQUEST_LINE = 1024 * 1024
#: gunicorn's caps for out-of-range limit settings (gunicorn.http.message).
MAX_REQUEST_LINE = 8190
MAX_HEADERS = 32768
DEFAULT_MAX_HEADERFIELD_SIZE = 8190
#: The largest Content-Length taken: llhttp accepts up to 2**64 - 1, more
#: than the compiled twin's signed 64-bit counters hold. Nothing that large
#: is a real body, so both twins answer 413 for it.
MAX_CONTENT_LENGTH = 2**63 - 1

#: Response header fields that describe this connection, not the resource:
#: the worker decides framing and persistence, so the application's are dropped.
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailers", "transfer-encoding", "upgrade",
))

REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}

# RFC 9110 5.6.2 token; RFC 9110 5.5 field-value (SP, HTAB, VCHAR, obs-text);
# RFC 9112 4 status-code [SP reason-phrase]. The same patterns gunicorn uses.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
_HEADER_VALUE_RE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")
_STATUS_RE = re.compile(r"[0-9]{3}(?: [ \t\x21-\x7e\x80-\xff]*)?")

# What the bytes llhttp is reading in a chunked body are, besides chunk data:
# a chunk-size line (size, extensions; from the end of the head or of the
# previous chunk to on_chunk_header) or what follows a chunk-size line up to
# on_chunk_complete (the CRLF after the data; for the last chunk, the
# trailer section). llhttp scans chunk extensions without a callback that
# httptools passes on, so the parser counts these bytes itself (see feed).
_NO_META, _SIZE_LINE, _CHUNK_TAIL = range(3)

# Header kinds that need more than "store in the environ".
_PLAIN, _HOST, _CONTENT_TYPE, _CONTENT_LENGTH, _TRANSFER_ENCODING, _EXPECT = range(6)
_SPECIAL = {
    "HOST": _HOST,
    "CONTENT-TYPE": _CONTENT_TYPE,
    "CONTENT-LENGTH": _CONTENT_LENGTH,
    "TRANSFER-ENCODING": _TRANSFER_ENCODING,
    "EXPECT": _EXPECT,
}
# PERF: header name bytes -> (NAME, environ key, kind). Mapping a name costs
# a decode, upper() and replace(); the cache makes it one dict lookup
# (~0.3 us saved per header). Bounded so random names cannot grow it.
_NAME_CACHE: dict[bytes, tuple[str, str, int]] = {}
_NAME_CACHE_SIZE = 512


def _bad_request(message):
    return HttpError(400, "bad_request", message)


def _too_large(message):
    return HttpError(431, "header_fields_too_large", message)


def _length_too_large():
    return HttpError(413, "payload_too_large", "Content-Length too large")


def _map_name(name):
    entry = _NAME_CACHE.get(name)
    if entry is None:
        # llhttp only passes RFC 9110 token bytes, so upper() after the
        # latin-1 decode cannot fold a non-ASCII byte into ASCII.
        upper = name.decode("latin-1").upper()
        kind = _SPECIAL.get(upper, _PLAIN)
        if kind == _CONTENT_TYPE:
            key = "CONTENT_TYPE"
        elif kind == _CONTENT_LENGTH:
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + upper.replace("-", "_")
        entry = (upper, key, kind)
        if len(_NAME_CACHE) < _NAME_CACHE_SIZE:
            _NAME_CACHE[name] = entry
    return entry


def _split_target(method, target):
    """Return (path, query) of a request-target, or raise HttpError."""
    if target[:1] == b"/":
        # origin-form, the only form a client sends to an origin server.
        path, _, query = target.partition(b"?")
        if b"#" in query:
            query = query.partition(b"#")[0]
        elif b"#" in path:
            path = path.partition(b"#")[0]
        return path, query
    if target == b"*":
        # RFC 9112 3.2.4: asterisk-form is only for OPTIONS.
        if method != b"OPTIONS":
            raise _bad_request("asterisk-form target outside OPTIONS")
        return target, b""
    if b"://" in target:
        # RFC 9112 3.2.2: absolute-form; the path is what routing sees.
        parts = urlsplit(target.decode("latin-1"))
        return parts.path.encode("latin-1"), parts.query.encode("latin-1")
    raise _bad_request("invalid request target")


def _decode_path(path):
    if b"%" in path:
        return unquote_to_bytes(path).decode("latin-1")
    return path.decode("latin-1")


class Request:
    """One request whose head is complete; its body may still be arriving.

    ``headers`` holds (NAME, value) pairs in gunicorn's shape, for the access
    log and the pre/post_request hooks. ``body`` collects body bytes as the
    parser sees them; the worker takes from it. ``complete`` is set once the
    whole message (body included) has been parsed.
    """

    __slots__ = (
        "environ", "method", "uri", "path", "query", "version", "headers",
        "keep_alive", "expect_continue", "content_length", "chunked",
        "body", "body_received", "complete", "discard", "body_error",
    )

    def __init__(self, environ):
        self.environ = environ
        self.method = None
        self.uri = None
        self.path = None
        self.query = None
        self.version = (1, 1)
        self.headers = []
        self.keep_alive = False
        self.expect_continue = False
        self.content_length = -1
        self.chunked = False
        self.body = bytearray()
        self.body_received = 0
        self.complete = False
        self.discard = False
        self.body_error = None


class RequestParser:
    """Feed bytes in, take complete request heads out of ``requests``.

    Args:
        environ: Template environ for this connection (copied per request).
        limits: (limit_request_line, limit_request_fields,
            limit_request_field_size) as in gunicorn's config.
        secure_scheme_headers: {NAME: value meaning https}; empty unless the
            peer is a trusted proxy.
        header_map: gunicorn's ``header_map``: "drop", "refuse" or
            "dangerous", for header names containing "_".

    After a ``feed``: ``requests`` holds heads in arrival order; ``error`` is
    an HttpError to answer once those are served; ``closed`` says no request
    will follow the queued ones (error, Upgrade, broken body).
    """

    def __init__(self, environ, limits, secure_scheme_headers=None,
                 header_map="drop"):
        line, fields, field_size = limits
        if line < 0 or line >= MAX_REQUEST_LINE:
            line = MAX_REQUEST_LINE
        elif line == 0:
            line = UNLIMITED_REQUEST_LINE
        if fields <= 0 or fields > MAX_HEADERS:
            fields = MAX_HEADERS
        if field_size <= 0:
            field_size = DEFAULT_MAX_HEADERFIELD_SIZE
        self._line_limit = line
        self._fields_limit = fields
        self._field_size_limit = field_size
        # Bounds the bytes a head may span while httptools accumulates it:
        # every limit above at its maximum, plus one socket read of slack
        # because a read may also carry the previous message.
        self._head_limit = line + fields * (field_size + 2) + 4 + 65536
        # CVE-2024-22019 class: a chunk-size line, extensions included, gets
        # at most limit_request_field_size bytes before its LF (gunicorn's
        # stock reader uses the same bound); a trailer section at most what a
        # head may span. feed() hands llhttp at most one line's worth of
        # bytes at a time so that no over-long line can start and end unseen
        # inside one piece.
        self._chunk_line_limit = field_size
        self._trailer_limit = self._head_limit
        self._piece = field_size + 1
        self._meta_kind = _NO_META
        self._meta = 0
        self._meta_new = False
        self._template = environ
        self._scheme_headers = secure_scheme_headers or {}
        self._header_map = header_map
        self.requests: deque[Request] = deque()
        self.error = None
        self.closed = False
        self._parser = httptools.HttpRequestParser(self)
        # None only until the first on_message_begin, which every other
        # callback follows; feed() checks for it before reading the body count.
        self._req: Request = None  # type: ignore[assignment]
        self._url = b""
        self._in_head = False
        self._in_body = False
        self._head_bytes = 0
        self._fields = 0
        self._scheme = None

    def feed(self, data):
        """Parse ``data``; protocol errors are recorded, never raised.

        The bytes go to llhttp in pieces: the rest of a Content-Length body
        in one, anything else at most ``limit_request_field_size + 1`` bytes
        at a time (the whole of ``data`` in the usual case), so the bytes of
        chunk-size lines and trailer sections can be counted (_count_meta).
        """
        end = len(data)
        pos = 0
        while pos < end and not self.closed:
            req = self._req
            if self._in_body and not req.chunked:
                step = req.content_length - req.body_received
            elif self._meta_kind == _SIZE_LINE:
                step = self._chunk_line_limit + 1 - self._meta
            else:
                step = self._piece
            if pos == 0 and step >= end:
                piece = data
            else:
                piece = data[pos:pos + step]
            pos += step
            before = req.body_received if req is not None else 0
            if not self._feed(piece):
                return
            if self._in_head:
                self._head_bytes += len(piece)
                if self._head_bytes > self._head_limit:
                    self._failed(_too_large("request head too large"))
            elif self._meta_kind:
                self._count_meta(piece, req, before)

    def _feed(self, data):
        """Give llhttp ``data``; False once the connection cannot go on."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # llhttp stops at an Upgrade request (served as plain HTTP) and
            # what follows is another protocol: close after answering.
            self._req.keep_alive = False
            self.closed = True
        except httptools.HttpParserCallbackError as ex:
            # httptools keeps what a callback raised as the context; anything
            # but an HttpError is a bug here and must surface.
            if not isinstance(ex.__context__, HttpError):
                raise ex.__context__ or ex  # noqa: B904 - as the callback raised it
            self._failed(ex.__context__)
        except httptools.HttpParserInvalidMethodError:
            self._failed(_bad_request("invalid method"))
        except httptools.HttpParserInvalidURLError:
            self._failed(_bad_request("invalid request target"))
        except httptools.HttpParserError as ex:
            self._failed(_bad_request(str(ex)))
        else:
            return True
        return False

    def _count_meta(self, piece, req, before):
        """Count the non-data bytes of the chunked body segment now open.

        A segment that continues from the previous piece grows by this
        piece's bytes that were not chunk data. One that began in this piece
        is measured from its start: a chunk-size line starts right after an
        LF (the head's or the previous chunk's) and holds none until its own,
        so it is what follows the piece's last LF; for a chunk tail, the
        piece's non-data bytes are an upper bound.
        """
        current = self._req
        body = current.body_received - (before if current is req else 0)
        if self._meta_new:
            self._meta_new = False
            if self._meta_kind == _SIZE_LINE:
                if type(piece) is memoryview:
                    piece = bytes(piece)
                count = len(piece) - piece.rfind(b"\n") - 1
            else:
                count = len(piece) - body
        else:
            count = self._meta + len(piece) - body
        self._meta = count
        if self._meta_kind == _SIZE_LINE:
            if count > self._chunk_line_limit:
                self._failed(_bad_request("chunk size line too long"))
        elif count > self._trailer_limit:
            self._failed(_too_large("trailer section too large"))

    def close(self):
        """Break the parser <-> protocol reference cycle."""
        self._parser = None  # type: ignore[assignment]  # never fed after close()
        self.closed = True

    def _failed(self, error):
        self.closed = True
        if self._in_body:
            # The head was served already: the body reader raises this.
            self._req.body_error = error
        else:
            self.error = error

    # -- httptools callbacks ----------------------------------------------

    def on_message_begin(self):
        self._req = Request(self._template.copy())
        self._url = b""
        self._in_head = True
        self._head_bytes = 0
        self._fields = 0
        self._scheme = None

    def on_url(self, url):
        url = self._url + url
        if len(url) > self._line_limit:
            raise HttpError(414, "uri_too_long", "request line too long")
        self._url = url

    def on_header(self, name, value):
        self._fields += 1
        if self._fields > self._fields_limit:
            raise _too_large("too many header fields")
        # The field line is "name: value"; llhttp has already taken off the
        # OWS before the value, so count the one SP a client normally sends.
        if len(name) + len(value) + 4 > self._field_size_limit:
            raise _too_large("header field too large")
        if not self._in_head:
            return  # a chunked trailer: checked against the limits, not kept
        upper, key, kind = _map_name(name)
        value = value.rstrip(b" \t").decode("latin-1")
        req = self._req
        env = req.environ
        if "_" in upper:
            # "X_Forwarded_For" and "X-Forwarded-For" would share a key.
            if self._header_map == "drop":
                return
            if self._header_map != "dangerous":
                raise _bad_request(f"invalid header name {upper}")
        if kind:
            self._special_header(req, kind, upper, value)
        if upper in self._scheme_headers:
            scheme = "https" if value == self._scheme_headers[upper] else "http"
            if self._scheme is not None and scheme != self._scheme:
                raise _bad_request("contradictory scheme headers")
            self._scheme = scheme
        req.headers.append((upper, value))
        if key in env:
            env[key] = env[key] + "," + value
        else:
            env[key] = value

    def _special_header(self, req, kind, upper, value):
        if kind == _HOST or kind == _CONTENT_TYPE:
            # RFC 9110 5.3: a singleton field cannot be combined.
            if ("HTTP_HOST" if kind == _HOST else "CONTENT_TYPE") in req.environ:
                raise _bad_request(f"duplicate {upper} header")
        elif kind == _CONTENT_LENGTH:
            # llhttp has rejected non-digits, a sign and duplicates.
            length = int(value)
            if length > MAX_CONTENT_LENGTH:
                raise _length_too_large()
            req.content_length = length
        elif kind == _TRANSFER_ENCODING:
            # Only a lone "chunked" frames a request body the same way in
            # every proxy; llhttp alone would accept "gzip, chunked".
            if value.lower() != "chunked":
                raise _bad_request("unsupported transfer coding")
            req.chunked = True
        elif kind == _EXPECT:
            if value.lower() != "100-continue":
                raise HttpError(417, "expectation_failed",
                                     "unsupported expectation")
            req.expect_continue = True

    def on_headers_complete(self):
        parser = self._parser
        req = self._req
        url = self._url
        method = parser.get_method()
        version = parser.get_http_version()
        if version == "1.1":
            req.version = (1, 1)
        elif version == "1.0":
            req.version = (1, 0)
            # RFC 9110 10.1.1: a 1.0 request's 100-continue is ignored.
            req.expect_continue = False
            if req.chunked:
                raise _bad_request("chunked body in an HTTP/1.0 request")
        else:
            raise _bad_request("unsupported HTTP version")
        if len(method) + len(url) + 10 > self._line_limit:
            raise HttpError(414, "uri_too_long", "request line too long")
        if method == b"CONNECT":
            raise _bad_request("CONNECT is not supported")
        if parser.should_upgrade():
            # Served as plain HTTP, then closed; a body would be left unread
            # by llhttp, so refuse instead of handing the app an empty one.
            if req.chunked or req.content_length > 0:
                raise _bad_request("Upgrade request with a body")
        path, query = _split_target(method, url)
        env = req.environ
        req.method = env["REQUEST_METHOD"] = method.decode("ascii")
        req.uri = env["RAW_URI"] = url.decode("latin-1")
        req.path = path = _decode_path(path)
        req.query = env["QUERY_STRING"] = query.decode("latin-1")
        script_name = env["SCRIPT_NAME"]
        if script_name:
            if not path.startswith(script_name):
                raise HttpError(500, "internal_error",
                                     "path outside SCRIPT_NAME")
            path = path[len(script_name):]
        env["PATH_INFO"] = path
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version[1] else "HTTP/1.0"
        if self._scheme is not None:
            env["wsgi.url_scheme"] = self._scheme
        req.keep_alive = parser.should_keep_alive()
        self._in_head = False
        self._in_body = True
        if req.chunked:
            self._meta_kind = _SIZE_LINE
            self._meta_new = True
        self.requests.append(req)

    def on_body(self, data):
        req = self._req
        req.body_received += len(data)
        if not req.discard:
            req.body += data

    def on_chunk_header(self):
        self._meta_kind = _CHUNK_TAIL
        self._meta_new = True

    def on_chunk_complete(self):
        self._meta_kind = _SIZE_LINE
        self._meta_new = True

    def on_message_complete(self):
        self._req.complete = True
        self._in_body = False
        self._meta_kind = _NO_META


class ResponseHead:
    """What ``encode_response`` decided, and the bytes to send first.

    ``length`` is the Content-Length (-1 when unknown); ``body_sent`` counts
    the body bytes already inside ``data``.
    """

    __slots__ = ("data", "status_code", "length", "chunked", "keep_alive",
                 "omit_body", "body_sent")

    def __init__(self, data, status_code, length, chunked, keep_alive,
                 omit_body, body_sent):
        self.data = data
        self.status_code = status_code
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.omit_body = omit_body
        self.body_sent = body_sent


_date_cache = [0, ""]


def http_date():
    """Return the IMF-fixdate for now, formatted once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


def encode_response(status, headers, minor, keep_alive, head_request,
                    body=None):
    """Validate a WSGI status and headers; return a ResponseHead.

    Args:
        status: The WSGI status line, e.g. "200 OK".
        headers: The WSGI list of (name, value) str pairs.
        minor: The request's HTTP minor version (0 or 1), echoed back.
        keep_alive: Whether the connection may stay open after this.
        head_request: True for HEAD: the response carries no body.
        body: The whole body when the app returned it as one bytes chunk;
            it is appended to the head (and sets Content-Length if the app
            did not), so the response goes out in one write.

    Raises:
        TypeError, ValueError: the application broke WSGI or HTTP rules.
    """
    if type(status) is not str:
        raise TypeError(f"{status!r} is not a string")
    if not _STATUS_RE.fullmatch(status):
        raise ValueError(f"invalid status {status!r}")
    code = int(status[:3])
    # RFC 9110: HEAD, 1xx, 204 and 304 responses have no body; 1xx and 204
    # must not carry Content-Length either.
    omit_body = head_request or code == 204 or code == 304 or code < 200
    no_length = code == 204 or code < 200
    length = -1
    lines = []
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header {name!r}: {value!r} is not a str pair")
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if not _HEADER_VALUE_RE.fullmatch(value):
            raise ValueError(f"invalid value for header {name!r}")
        value = value.strip(" \t")
        lname = name.lower()
        if lname == "content-length":
            if no_length:
                continue
            length = int(value)
            if length < 0:
                raise ValueError("negative Content-Length")
        elif lname in HOP_BY_HOP:
            continue
        lines.append(f"{name}: {value}\r\n")
    if body is not None and length < 0 and not omit_body:
        length = len(body)
        lines.append(f"Content-Length: {length}\r\n")
    chunked = length < 0 and minor >= 1 and not omit_body
    # Without a length or chunking, only closing the connection ends the body.
    keep_alive = keep_alive and (length >= 0 or chunked or omit_body)
    head = "".join((
        f"HTTP/1.{minor} {status}\r\nServer: gunicorn\r\nDate: {http_date()}\r\n",
        "Connection: keep-alive\r\n" if keep_alive else "Connection: close\r\n",
        "Transfer-Encoding: chunked\r\n" if chunked else "",
        *lines,
        "\r\n",
    ))
    data = head.encode("latin-1")
    body_sent = 0
    if body and not omit_body:
        if 0 <= length < len(body):
            body = body[:length]
        data += body
        body_sent = len(body)
    return ResponseHead(data, code, length, chunked, keep_alive, omit_body,
                        body_sent)


def new_request_id():
    """Return a random id for a response the server produced itself."""
    return secrets.token_hex(16)


def new_traceparent():
    """Return a W3C traceparent starting a new trace, for an answer the server made itself.

    The request it answers could not be read, so no caller's trace is continued.
    """
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def error_response(error, request_id, minor=1, traceparent=None):
    """Return the bytes of a JSON error envelope answer for ``error``.

    With ``traceparent``, the envelope carries its trace id next to the
    request id (as the application's do) and the answer the header.
    The connection always closes after it: the request that caused it may
    have left unread bytes behind.
    """
    envelope = {"error": {"code": error.code, "message": error.message},
                "request_id": request_id}
    if traceparent is not None:
        envelope["trace_id"] = traceparent.split("-")[1]
    body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
    head = (
        f"HTTP/1.{minor} {error.status} {REASONS.get(error.status, 'Error')}\r\n"
        f"Server: gunicorn\r\nDate: {http_date()}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        + (f"traceparent: {traceparent}\r\n" if traceparent is not None else "")
        + "\r\n"
    )
    return head.encode("latin-1") + body
