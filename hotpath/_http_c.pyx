"""HTTP/1.1 glue for the gevent worker: the compiled twin.

Same API and behaviour as ``hotpath._http_py`` (the reference; read its
docstrings). CPU only: it is handed bytes and returns objects, so it can never
block the gevent hub. Both twins raise ``hotpath._http_errors.HttpError``;
the constants and the error envelope come from the pure twin.
"""

from collections import deque
from email.utils import formatdate
from urllib.parse import unquote_to_bytes, urlsplit

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.time cimport time as c_time, time_t

import httptools

from hotpath._http_py import (
    DEFAULT_MAX_HEADERFIELD_SIZE,
    HOP_BY_HOP,
    MAX_CONTENT_LENGTH,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    UNLIMITED_REQUEST_LINE,
)
from hotpath._http_errors import HttpError

__all__ = ("HttpError", "Request", "RequestParser", "ResponseHead", "encode_response",
           "http_date")

cdef enum HeaderKind:
    PLAIN, HOST, CONTENT_TYPE, CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT

# What non-data bytes of a chunked body llhttp is reading; see _http_py.
cdef enum MetaKind:
    NO_META, SIZE_LINE, CHUNK_TAIL

cdef dict _SPECIAL = {
    "HOST": HOST,
    "CONTENT-TYPE": CONTENT_TYPE,
    "CONTENT-LENGTH": CONTENT_LENGTH,
    "TRANSFER-ENCODING": TRANSFER_ENCODING,
    "EXPECT": EXPECT,
}
# PERF: header name bytes -> (NAME, environ key, kind), as in the pure twin.
cdef dict _NAME_CACHE = {}
cdef Py_ssize_t _NAME_CACHE_SIZE = 512

cdef object _HttpParserUpgrade = httptools.HttpParserUpgrade
cdef object _HttpParserCallbackError = httptools.HttpParserCallbackError
cdef object _HttpParserInvalidMethodError = httptools.HttpParserInvalidMethodError
cdef object _HttpParserInvalidURLError = httptools.HttpParserInvalidURLError
cdef object _HttpParserError = httptools.HttpParserError


cdef inline object _bad_request(str message):
    return HttpError(400, "bad_request", message)


cdef inline object _too_large(str message):
    return HttpError(431, "header_fields_too_large", message)


cdef inline object _length_too_large():
    return HttpError(413, "payload_too_large", "Content-Length too large")


cdef tuple _map_name(bytes name):
    cdef tuple entry = _NAME_CACHE.get(name)
    cdef str upper, key
    cdef int kind
    if entry is None:
        # llhttp only passes token bytes: upper() cannot fold into ASCII.
        upper = name.decode("latin-1").upper()
        kind = _SPECIAL.get(upper, PLAIN)
        if kind == CONTENT_TYPE:
            key = "CONTENT_TYPE"
        elif kind == CONTENT_LENGTH:
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + upper.replace("-", "_")
        entry = (upper, key, kind)
        if len(_NAME_CACHE) < _NAME_CACHE_SIZE:
            _NAME_CACHE[name] = entry
    return entry


cdef tuple _split_target(bytes method, bytes target):
    cdef bytes path, query
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        if b"#" in query:
            query = query.partition(b"#")[0]
        elif b"#" in path:
            path = path.partition(b"#")[0]
        return path, query
    if target == b"*":
        if method != b"OPTIONS":
            raise _bad_request("asterisk-form target outside OPTIONS")
        return target, b""
    if b"://" in target:
        parts = urlsplit(target.decode("latin-1"))
        return parts.path.encode("latin-1"), parts.query.encode("latin-1")
    raise _bad_request("invalid request target")


cdef inline str _decode_path(bytes path):
    if b"%" in path:
        return unquote_to_bytes(path).decode("latin-1")
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path), NULL)


cdef inline str _decode_value(bytes value):
    # llhttp drops the OWS before a value but keeps the OWS after it.
    cdef const char* p = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    while n > 0 and (p[n - 1] == b" " or p[n - 1] == b"\t"):
        n -= 1
    return PyUnicode_DecodeLatin1(p, n, NULL)


cdef class Request:
    """One request whose head is complete; see ``_http_py.Request``."""

    cdef public dict environ
    cdef public object method, uri, path, query, version, body_error
    cdef public list headers
    cdef public bytearray body
    cdef public bint keep_alive, expect_continue, chunked, complete, discard
    cdef public long long content_length, body_received

    def __init__(self, dict environ):
        self.environ = environ
        self.version = (1, 1)
        self.headers = []
        self.content_length = -1
        self.body = bytearray()


cdef class RequestParser:
    """Feed bytes in, take request heads out; see ``_http_py.RequestParser``."""

    cdef public object requests
    cdef public object error
    cdef public bint closed
    cdef object _parser
    cdef dict _template
    cdef dict _scheme_headers
    cdef str _header_map
    cdef Request _req
    cdef bytes _url
    cdef bint _in_head, _in_body
    cdef Py_ssize_t _line_limit, _fields_limit, _field_size_limit
    cdef Py_ssize_t _head_limit, _head_bytes, _fields
    cdef Py_ssize_t _chunk_line_limit, _trailer_limit, _piece, _meta
    cdef int _meta_kind
    cdef bint _meta_new
    cdef object _scheme

    def __init__(self, dict environ, tuple limits, secure_scheme_headers=None,
                 str header_map="drop"):
        cdef Py_ssize_t line, fields, field_size
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
        self._head_limit = line + fields * (field_size + 2) + 4 + 65536
        # Chunk-size lines and trailer sections: see _http_py.RequestParser.
        self._chunk_line_limit = field_size
        self._trailer_limit = self._head_limit
        self._piece = field_size + 1
        self._meta_kind = NO_META
        self._meta = 0
        self._meta_new = False
        self._template = environ
        self._scheme_headers = dict(secure_scheme_headers or {})
        self._header_map = header_map
        self.requests = deque()
        self.error = None
        self.closed = False
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""

    def feed(self, data):
        """Parse ``data``; protocol errors are recorded, never raised.

        Fed to llhttp in pieces, as in ``_http_py.RequestParser.feed``.
        """
        cdef Py_ssize_t end = len(data)
        cdef Py_ssize_t pos = 0
        cdef long long step, before
        cdef Request req
        while pos < end and not self.closed:
            req = self._req
            if self._in_body and not req.chunked:
                step = req.content_length - req.body_received
            elif self._meta_kind == SIZE_LINE:
                step = self._chunk_line_limit + 1 - self._meta
            else:
                step = self._piece
            if step > end - pos:
                step = end - pos
            if pos == 0 and step == end:
                piece = data
            else:
                piece = data[pos:pos + step]
            pos += step
            before = req.body_received if req is not None else 0
            if not self._feed(piece):
                return
            if self._in_head:
                self._head_bytes += step
                if self._head_bytes > self._head_limit:
                    self._failed(_too_large("request head too large"))
            elif self._meta_kind != NO_META:
                self._count_meta(piece, step, req, before)

    cdef bint _feed(self, data) except -1:
        try:
            self._parser.feed_data(data)
        except _HttpParserUpgrade:
            self._req.keep_alive = False
            self.closed = True
        except _HttpParserCallbackError as ex:
            # httptools keeps what a callback raised as the context.
            if not isinstance(ex.__context__, HttpError):
                raise ex.__context__ or ex
            self._failed(ex.__context__)
        except _HttpParserInvalidMethodError:
            self._failed(_bad_request("invalid method"))
        except _HttpParserInvalidURLError:
            self._failed(_bad_request("invalid request target"))
        except _HttpParserError as ex:
            self._failed(_bad_request(str(ex)))
        else:
            return True
        return False

    cdef _count_meta(self, piece, Py_ssize_t size, Request req, long long before):
        # See _http_py.RequestParser._count_meta.
        cdef Request current = self._req
        cdef long long body = current.body_received - (before if current is req else 0)
        cdef Py_ssize_t count
        if self._meta_new:
            self._meta_new = False
            if self._meta_kind == SIZE_LINE:
                if type(piece) is memoryview:
                    piece = bytes(piece)
                count = size - piece.rfind(b"\n") - 1
            else:
                count = <Py_ssize_t>(size - body)
        else:
            count = <Py_ssize_t>(self._meta + size - body)
        self._meta = count
        if self._meta_kind == SIZE_LINE:
            if count > self._chunk_line_limit:
                self._failed(_bad_request("chunk size line too long"))
        elif count > self._trailer_limit:
            self._failed(_too_large("trailer section too large"))

    def close(self):
        """Break the parser <-> protocol reference cycle."""
        self._parser = None
        self.closed = True

    cdef _failed(self, error):
        self.closed = True
        if self._in_body:
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

    def on_url(self, bytes url):
        url = self._url + url
        if len(url) > self._line_limit:
            raise HttpError(414, "uri_too_long", "request line too long")
        self._url = url

    def on_header(self, bytes name, bytes value):
        cdef str upper, key, text
        cdef int kind
        cdef Request req
        cdef dict env
        self._fields += 1
        if self._fields > self._fields_limit:
            raise _too_large("too many header fields")
        if len(name) + len(value) + 4 > self._field_size_limit:
            raise _too_large("header field too large")
        if not self._in_head:
            return
        upper, key, kind = _map_name(name)
        text = _decode_value(value)
        req = self._req
        env = req.environ
        if "_" in upper:
            if self._header_map == "drop":
                return
            if self._header_map != "dangerous":
                raise _bad_request(f"invalid header name {upper}")
        if kind != PLAIN:
            self._special_header(req, kind, upper, text)
        if self._scheme_headers and upper in self._scheme_headers:
            scheme = "https" if text == self._scheme_headers[upper] else "http"
            if self._scheme is not None and scheme != self._scheme:
                raise _bad_request("contradictory scheme headers")
            self._scheme = scheme
        req.headers.append((upper, text))
        previous = env.get(key)
        if previous is None:
            env[key] = text
        else:
            env[key] = previous + "," + text

    cdef _special_header(self, Request req, int kind, str upper, str value):
        if kind == HOST or kind == CONTENT_TYPE:
            if ("HTTP_HOST" if kind == HOST else "CONTENT_TYPE") in req.environ:
                raise _bad_request(f"duplicate {upper} header")
        elif kind == CONTENT_LENGTH:
            # Compared as a Python int: llhttp takes up to 2**64 - 1, and
            # assigning that to the long long would raise OverflowError.
            length = int(value)
            if length > MAX_CONTENT_LENGTH:
                raise _length_too_large()
            req.content_length = length
        elif kind == TRANSFER_ENCODING:
            if value.lower() != "chunked":
                raise _bad_request("unsupported transfer coding")
            req.chunked = True
        elif kind == EXPECT:
            if value.lower() != "100-continue":
                raise HttpError(417, "expectation_failed",
                                     "unsupported expectation")
            req.expect_continue = True

    def on_headers_complete(self):
        cdef Request req = self._req
        cdef bytes url = self._url
        cdef bytes method, path, query
        cdef str version, path_info, script_name
        cdef dict env = req.environ
        parser = self._parser
        method = parser.get_method()
        version = parser.get_http_version()
        if version == "1.1":
            req.version = (1, 1)
        elif version == "1.0":
            req.version = (1, 0)
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
            if req.chunked or req.content_length > 0:
                raise _bad_request("Upgrade request with a body")
        path, query = _split_target(method, url)
        req.method = env["REQUEST_METHOD"] = method.decode("ascii")
        req.uri = env["RAW_URI"] = PyUnicode_DecodeLatin1(
            PyBytes_AS_STRING(url), PyBytes_GET_SIZE(url), NULL)
        req.path = path_info = _decode_path(path)
        req.query = env["QUERY_STRING"] = PyUnicode_DecodeLatin1(
            PyBytes_AS_STRING(query), PyBytes_GET_SIZE(query), NULL)
        script_name = env["SCRIPT_NAME"]
        if script_name:
            if not path_info.startswith(script_name):
                raise HttpError(500, "internal_error",
                                     "path outside SCRIPT_NAME")
            path_info = path_info[len(script_name):]
        env["PATH_INFO"] = path_info
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version[1] else "HTTP/1.0"
        if self._scheme is not None:
            env["wsgi.url_scheme"] = self._scheme
        req.keep_alive = parser.should_keep_alive()
        self._in_head = False
        self._in_body = True
        if req.chunked:
            self._meta_kind = SIZE_LINE
            self._meta_new = True
        self.requests.append(req)

    def on_body(self, bytes data):
        cdef Request req = self._req
        req.body_received += len(data)
        if not req.discard:
            req.body += data

    def on_chunk_header(self):
        self._meta_kind = CHUNK_TAIL
        self._meta_new = True

    def on_chunk_complete(self):
        self._meta_kind = SIZE_LINE
        self._meta_new = True

    def on_message_complete(self):
        self._req.complete = True
        self._in_body = False
        self._meta_kind = NO_META


cdef class ResponseHead:
    """What ``encode_response`` decided; see ``_http_py.ResponseHead``."""

    cdef readonly bytes data
    cdef readonly int status_code
    cdef readonly long long length
    cdef readonly bint chunked, keep_alive, omit_body
    cdef readonly Py_ssize_t body_sent


cdef time_t _date_second = 0
cdef str _date_text = ""


def http_date():
    """Return the IMF-fixdate for now, formatted once per second."""
    global _date_second, _date_text
    cdef time_t now = c_time(NULL)
    if now != _date_second:
        _date_second = now
        _date_text = formatdate(now, usegmt=True)
    return _date_text


cdef inline bint _is_tchar(Py_UCS4 c):
    # RFC 9110 5.6.2 tchar.
    if u"0" <= c <= u"9" or u"a" <= c <= u"z" or u"A" <= c <= u"Z":
        return True
    return c in u"!#$%&'*+-.^_`|~"


cdef bint _is_token(str s):
    cdef Py_UCS4 c
    if not s:
        return False
    for c in s:
        if not _is_tchar(c):
            return False
    return True


cdef bint _is_field_value(str s):
    # RFC 9110 5.5: SP, HTAB, VCHAR, obs-text (within latin-1).
    cdef Py_UCS4 c
    for c in s:
        if c != u" " and c != u"\t" and (c < 0x21 or c == 0x7f or c > 0xff):
            return False
    return True


cdef bint _is_status(str s):
    cdef Py_ssize_t n = len(s)
    cdef Py_ssize_t i
    cdef Py_UCS4 c
    if n < 3:
        return False
    for i in range(3):
        c = s[i]
        if not (u"0" <= c <= u"9"):
            return False
    if n == 3:
        return True
    c = s[3]
    return c == u" " and _is_field_value(s[4:])


def encode_response(status, headers, int minor, bint keep_alive,
                    bint head_request, body=None):
    """Validate a WSGI status and headers; return a ResponseHead.

    See ``_http_py.encode_response``.
    """
    cdef int code
    cdef bint omit_body, no_length, chunked
    cdef long long length = -1
    cdef list lines
    cdef str lname
    cdef ResponseHead result
    cdef bytes data
    if type(status) is not str:
        raise TypeError(f"{status!r} is not a string")
    if not _is_status(status):
        raise ValueError(f"invalid status {status!r}")
    code = int(status[:3])
    omit_body = head_request or code == 204 or code == 304 or code < 200
    no_length = code == 204 or code < 200
    lines = [
        f"HTTP/1.{minor} {status}\r\nServer: gunicorn\r\nDate: {http_date()}\r\n",
        None,  # Connection, and Transfer-Encoding: decided after the loop
    ]
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header {name!r}: {value!r} is not a str pair")
        if not _is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if not _is_field_value(value):
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
    keep_alive = keep_alive and (length >= 0 or chunked or omit_body)
    if keep_alive:
        lines[1] = ("Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
                    if chunked else "Connection: keep-alive\r\n")
    else:
        lines[1] = ("Connection: close\r\nTransfer-Encoding: chunked\r\n"
                    if chunked else "Connection: close\r\n")
    lines.append("\r\n")
    data = "".join(lines).encode("latin-1")
    result = ResponseHead.__new__(ResponseHead)
    result.body_sent = 0
    if body and not omit_body:
        if 0 <= length < len(body):
            body = body[:length]
        data += body
        result.body_sent = len(body)
    result.data = data
    result.status_code = code
    result.length = length
    result.chunked = chunked
    result.keep_alive = keep_alive
    result.omit_body = omit_body
    return result
