"""One JSON object per log line, on stderr (journald or the terminal).

Every record carries the current request id and trace id (app/tracing.py)
when there are some; the request log line adds method, route template,
status and duration. gunicorn's own lines (boot, worker start and exit,
timeouts) use the same formatter (app/gunicorn_conf.py), so there is one log
format. Nothing here ever logs bodies, tokens or passwords.

PERF: the request line skips the logging module (LogRecord, handler lock,
formatter: ~44 us of worker CPU per line with the write): it is queued as a
msgspec struct in a process-wide buffer and encoded at flush (~1.5 us a
line in all). The buffer is written to stderr when it holds
``BUFFER_BYTES``, on every ``app.flushing`` tick (0.25 s in a worker), at
exit (gunicorn's worker_exit hook, after a graceful shutdown's requests have
finished; atexit elsewhere), and before
any record at WARNING or above. Every other record goes through the same
buffer, so lines stay in the order they were logged. A worker killed with
SIGKILL loses at most the last tick's lines.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import stat
import sys
import threading
import time

import msgspec

from app import flushing, tracing

#: Buffered bytes that trigger a write (a few hundred request lines).
BUFFER_BYTES = 64 * 1024
#: What a pipe on stderr is enlarged to: several flushes. A flush is a little
#: over BUFFER_BYTES; in a 64 KiB pipe (Linux's default) one flush could
#: fill it, and then the blocking write freezes the whole worker, every
#: greenlet, until the reader catches up. journald reads stderr from a unix
#: socket instead, whose send buffer (net.core.wmem_default, 208 KiB) already
#: holds a few flushes.
PIPE_BYTES = 1024 * 1024

_encode = msgspec.json.Encoder().encode
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

request_log = logging.getLogger("peregrine.request")


#: ".000Z" to ".999Z": PERF, indexing costs ~0.5k instructions less than
#: formatting the milliseconds per line.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _timestamp(created: float) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + _MILLIS[int((created - int(created)) * 1000)])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        request = tracing.current.get()
        if request is not None:
            entry["request_id"] = request[0]
            entry["trace_id"] = request[1]
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry).decode()


class RequestLine(msgspec.Struct):
    """The request log line: JsonFormatter's fields, in its order."""

    ts: str
    level: str
    logger: str
    msg: str
    pid: int
    request_id: str
    trace_id: str
    method: str
    route: object
    status: int
    duration_ms: float
    user_id: object


class RequestLineNoId(msgspec.Struct):
    """As RequestLine, outside a request (JsonFormatter omits both ids)."""

    ts: str
    level: str
    logger: str
    msg: str
    pid: int
    method: str
    route: object
    status: int
    duration_ms: float
    user_id: object


# enc_hook=str: a value msgspec cannot encode must not cost a flush its lines.
_encode_lines = msgspec.json.Encoder(enc_hook=str).encode_lines
#: What a buffered RequestLine counts towards BUFFER_BYTES: about its encoded
#: size (~260 bytes for /healthz, ~330 with a user id), so a flush stays near
#: BUFFER_BYTES.
_REQUEST_LINE_BYTES = 300


class LineBuffer:
    """Lines bound for one binary stream, written in order.

    Holds encoded lines (bytes, ending in a newline) and request lines
    (structs, encoded at flush: PERF, one ``encode_lines`` call for a run of
    them costs ~0.3 us a line against ~1 us for a dict encoded per request).
    Appends are lock-free (``deque.append`` is atomic, also from a native
    thread); ``flush`` drains under a lock so two flushes cannot reorder.
    """

    def __init__(self, stream, limit: int = BUFFER_BYTES):
        self._stream = stream
        self._limit = limit
        self._lines: collections.deque[bytes | msgspec.Struct] = collections.deque()
        self._size = 0  # approximate: only decides when to flush
        self._lock = threading.Lock()

    def write(self, line, size: int | None = None) -> None:
        """Buffer ``line``: bytes ending in a newline, or a struct to encode."""
        self._lines.append(line)
        self._size += len(line) if size is None else size
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines = self._lines
            if not lines:
                return
            self._size = 0
            popleft = lines.popleft
            chunks: list[bytes] = []
            run: list[object] = []  # the structs between two bytes lines
            for _ in range(len(lines)):
                line = popleft()
                if type(line) is bytes:
                    if run:
                        chunks.append(_encode_lines(run))
                        run = []
                    chunks.append(line)
                else:
                    run.append(line)
            if run:
                chunks.append(_encode_lines(run))
            data = b"".join(chunks)
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed or gone: nothing better to do with a log


class BufferedJsonHandler(logging.Handler):
    """Formats with JsonFormatter into the shared LineBuffer."""

    def __init__(self, buffer: LineBuffer):
        super().__init__()
        self.buffer = buffer
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode() + b"\n"
        except Exception:  # noqa: BLE001 - logging.Handler's contract: report, never raise
            self.handleError(record)
            return
        self.buffer.write(line)
        if record.levelno >= logging.WARNING:
            self.buffer.flush()  # problems are seen at once, after what preceded them

    def flush(self) -> None:
        self.buffer.flush()


# The buffer the request line writes to; None until configure() runs (tests
# that build the app without it get the logging module path).
_buffer: LineBuffer | None = None


class _Clock:
    """The timestamp's second part, formatted once per second."""

    second = -1
    prefix = ""
    pid = os.getpid()


def _after_fork() -> None:
    _Clock.pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def request_line(method: str, route: str | None, status: int, duration_ms: float,
                 user_id) -> None:
    """Log the request line: the same object JsonFormatter makes of
    ``request_log.info("request", extra={...})``, without the logging module.
    """
    if not request_log.isEnabledFor(logging.INFO):
        return
    buffer = _buffer
    if buffer is None:
        request_log.info("request", extra={
            "method": method, "route": route, "status": status,
            "duration_ms": duration_ms, "user_id": user_id})
        return
    now = time.time()
    second = int(now)
    clock = _Clock
    if second != clock.second:
        clock.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        clock.second = second
    ts = clock.prefix + _MILLIS[int((now - second) * 1000)]
    request = tracing.current.get()
    line: RequestLine | RequestLineNoId
    if request is not None:
        line = RequestLine(ts, "info", "peregrine.request", "request", clock.pid, request[0],
                           request[1], method, route, status, duration_ms, user_id)
    else:
        line = RequestLineNoId(ts, "info", "peregrine.request", "request", clock.pid,
                               method, route, status, duration_ms, user_id)
    buffer.write(line, _REQUEST_LINE_BYTES)


def configure(level: str = "info") -> None:
    global _buffer
    if _buffer is not None:
        _buffer.flush()
        flushing.unregister(_buffer.flush)
    stream = getattr(sys.stderr, "buffer", None)
    if stream is None:  # a text-only stand-in for stderr
        stream = _TextStream(sys.stderr)
    else:
        enlarge_pipe(stream)
    _buffer = LineBuffer(stream)
    flushing.register(_buffer.flush)
    handler = BufferedJsonHandler(_buffer)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # In a gunicorn worker, gunicorn's own records (its error log, already in
    # this format) join the same buffer: written straight to stderr they
    # would overtake buffered lines, e.g. "Worker exiting" before the last
    # requests' lines.
    gunicorn_log = logging.getLogger("gunicorn.error")
    if any(_writes_stderr(h) for h in gunicorn_log.handlers):
        gunicorn_log.handlers[:] = [h for h in gunicorn_log.handlers if not _writes_stderr(h)]
        gunicorn_log.addHandler(handler)


def _writes_stderr(handler: logging.Handler) -> bool:
    if isinstance(handler, BufferedJsonHandler):
        return True
    stream = getattr(handler, "stream", None)
    if type(handler) is not logging.StreamHandler or stream is None:
        return False
    try:
        return stream.fileno() == 2
    except (OSError, ValueError, AttributeError):
        return False


def enlarge_pipe(stream) -> int | None:
    """Grow ``stream``'s pipe to PIPE_BYTES (or the system's limit); its new size.

    None when ``stream`` is no pipe or the size cannot change: a best effort,
    logging works without it.
    """
    try:
        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        size = PIPE_BYTES
        try:
            with open("/proc/sys/fs/pipe-max-size") as limit:
                size = min(size, int(limit.read()))  # beyond it only root may go
        except (OSError, ValueError):
            pass
        if fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) < size:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except (OSError, ValueError, AttributeError):
        return None


class _TextStream:
    def __init__(self, stream):
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode())

    def flush(self) -> None:
        self._stream.flush()
