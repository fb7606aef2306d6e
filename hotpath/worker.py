"""A gunicorn gevent worker whose HTTP/1.1 loop parses with llhttp.

Use it with ``gunicorn -k hotpath.worker.GeventHTTPWorker``. Everything but
the per-connection loop is gunicorn's ``GeventWorker``: monkey-patching in
``init_process`` (so ``post_fork`` hooks such as psycogreen's keep working),
the heartbeat, signals, graceful shutdown, ``max_requests``. The loop here
reads with gevent sockets and leaves the CPU work (parsing glue, environ,
response bytes) to ``hotpath.http``, compiled when built.

Timeouts, none of which gunicorn's ``timeout`` (a heartbeat) gives:

- request heads: ``keepalive`` seconds for a whole head, idle time on a
  kept-alive connection included, as gunicorn does. ``keepalive = 0`` turns
  keep-alive off but does NOT turn this bound off: heads then get
  ``FALLBACK_HEADER_TIMEOUT`` seconds.
- request bodies: ``timeout`` seconds of waiting for body bytes in all,
  however the body is trickled (time the app spends between two reads does
  not count). Past it the app's read raises ``RequestTimeout`` (a
  ``ClientDisconnected``, so it never sees part of a body as all of it);
  the client gets a 408 JSON error if nothing was answered yet, one warning
  line is logged, and the connection closes.
- writes: ``timeout`` seconds for each blocked socket write.

``timeout = 0`` turns the body and write bounds off.

They are enforced by one greenlet per worker that shuts down the sockets of
connections past their deadline (every ``REAP_INTERVAL`` seconds), not by
socket timeouts.

Deliberate differences from gunicorn's ``gevent`` worker are listed in
bench/README.md ("HTTP workers").
"""

import errno
import ipaddress
import logging
import os
import socket
import time
from datetime import timedelta
from functools import partial
from io import BytesIO
from typing import Any

import gevent
import gevent.event
import gevent.socket
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.config import PostRequest, PreRequest
from gunicorn.glogging import Logger
from gunicorn.http.wsgi import base_environ
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from hotpath import http

__all__ = ("GeventHTTPWorker",)

#: Bytes asked of the socket per read.
RECV_SIZE = 65536
#: Unread body bytes the worker reads and drops to keep a connection open;
#: past this it is cheaper for both sides to close it.
DRAIN_LIMIT = 256 * 1024
#: Seconds allowed for a request head when ``keepalive`` is 0.
FALLBACK_HEADER_TIMEOUT = 5.0
#: Seconds between looks for connections past their deadline: a timeout
#: fires up to this much late.
REAP_INTERVAL = 0.25
#: Seconds between looks at the connections still open while stopping.
STOP_POLL = 0.05

_CLOSE_QUIETLY = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


class ClientDisconnected(OSError):
    """The client closed or stalled before sending the whole body."""


class RequestTimeout(ClientDisconnected):
    """The body did not arrive within ``timeout`` seconds of waiting."""


class GeventHTTPWorker(GeventWorker):
    """gunicorn's gevent worker with an llhttp-based request loop."""

    def init_process(self):
        # PERF: settings are read once here; every cfg attribute goes through
        # Config.__getattr__ (~21 lookups per request in the stock worker).
        cfg = self.cfg
        self.keepalive = cfg.keepalive > 0
        self.header_timeout = cfg.keepalive if self.keepalive else FALLBACK_HEADER_TIMEOUT
        self.io_timeout = cfg.timeout if cfg.timeout > 0 else 0
        self.connections = set()
        self.limits = (cfg.limit_request_line, cfg.limit_request_fields,
                       cfg.limit_request_field_size)
        self.header_map = cfg.header_map
        # PERF: gunicorn's default hooks are a debug line (a logger call on
        # every request: 1 % of a cached read's samples, py-spy) and a no-op;
        # None skips them. Hooks set in a config run as before.
        pre, post = cfg.pre_request, cfg.post_request
        debug = self.log.error_log.isEnabledFor(logging.DEBUG)
        self.pre_request = None if pre is PreRequest.pre_request and not debug else pre
        self.post_request = None if post is PostRequest.post_request else post
        self.base_environ = dict(base_environ(cfg))
        self.base_environ.update({
            "wsgi.multithread": True,
            "wsgi.url_scheme": "https" if cfg.is_ssl else "http",
            "SCRIPT_NAME": os.environ.get("SCRIPT_NAME", ""),
        })
        self._scheme_headers = cfg.secure_scheme_headers
        self._trust_all = "*" in cfg.forwarded_allow_ips
        self._trusted_networks = cfg.forwarded_allow_networks()
        self._server_addresses = {}
        # PERF: building access-log atoms is skipped when nothing consumes
        # them; a Logger subclass (statsd) overrides access() and always gets
        # called.
        log = self.log
        self.log_access = (type(log).access is not Logger.access
                           or log.access_log_enabled)
        if not self.keepalive:
            self.log.info("keepalive = 0: connections close after each "
                          "response; request heads still time out after %ss",
                          FALLBACK_HEADER_TIMEOUT)
        # GeventWorker.init_process patches, reinits the hub, then loads the
        # app and runs: the stock order, so psycogreen in post_fork still works.
        super().init_process()

    def run(self):
        """GeventWorker.run, but stopping as soon as max_requests is reached.

        PERF: gunicorn's loop looks at ``alive`` once a second, then at the
        connections still open once a second, so a recycled worker served
        nothing for 1-2 s (one worker at max_requests=20000: 5.6k req/s
        instead of 11k, p99 1.3 s). Here count_request() wakes the loop and
        the drain is polled every STOP_POLL s (bench/README.md).
        """
        gevent.spawn(self.expire_stalled_connections)
        self.stopping = gevent.event.Event()
        ssl_args: dict[str, Any] = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for listener in self.sockets:
            listener.setblocking(True)
            server = StreamServer(listener, handle=partial(self.handle, listener),
                                  spawn=Pool(self.worker_connections), **ssl_args)
            if self.cfg.workers > 1:
                server.max_accept = 1
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            self.stopping.wait(1.0)  # SIGTERM sets alive only: seen within 1 s
        for server in servers:
            server.close()  # stop accepting; in-flight requests finish
        deadline = time.monotonic() + self.cfg.graceful_timeout
        # Each server spawns from the Pool given to it above (never None).
        while any(server.pool.free_count() != server.pool.size  # type: ignore[union-attr]
                  for server in servers):
            if time.monotonic() > deadline:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for server in servers:
                    server.stop(timeout=1)
                return
            self.notify()
            gevent.sleep(STOP_POLL)

    def expire_stalled_connections(self):
        """Cut off connections whose socket operation is past its deadline.

        PERF: one timer for the worker instead of socket timeouts; a gevent
        socket with a timeout arms a Timeout on every read that waits. With
        Connection.send, this took 104.5 -> 73.5 us of CPU per request
        (bench/README.md).
        """
        while True:
            gevent.sleep(REAP_INTERVAL)
            now = time.monotonic()
            for conn in list(self.connections):
                if 0 < conn.deadline < now:
                    conn.expire()

    def handle(self, listener, client, addr):
        client.setblocking(True)
        conn = Connection(self, listener, client, addr)
        self.connections.add(conn)
        try:
            conn.serve()
        except ClientDisconnected as ex:
            self.log.debug("Client went away: %s", ex)
        except OSError as ex:
            if conn.expired or ex.errno in _CLOSE_QUIETLY:
                self.log.debug("Closing connection: %s", ex)
            else:
                self.log.exception("Socket error processing request.")
        except SystemExit:
            # As GeventWorker.handle_request: an app's SystemExit ends only
            # this connection.
            pass
        except Exception:
            self.log.exception("Error handling connection")
        finally:
            self.connections.discard(conn)
            conn.close()

    def connection_environ(self, listener, client, addr):
        """Return the environ template for one connection."""
        environ = self.base_environ.copy()
        environ["gunicorn.socket"] = client
        if isinstance(addr, tuple):
            environ["REMOTE_ADDR"] = addr[0]
            environ["REMOTE_PORT"] = str(addr[1])
        else:  # unix socket
            environ["REMOTE_ADDR"] = addr.decode() if isinstance(addr, bytes) else addr
        server = self._server_addresses.get(listener)
        if server is None:
            name = listener.getsockname()
            # A unix socket has a path and no port, as in gunicorn without Host.
            server = (name[0], str(name[1])) if isinstance(name, tuple) else (name, "")
            self._server_addresses[listener] = server
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server
        return environ

    def scheme_headers_for(self, addr):
        """Return secure_scheme_headers if ``addr`` may set them, else {}."""
        if not self._scheme_headers:
            return {}
        if self._trust_all or not isinstance(addr, tuple):
            return self._scheme_headers
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return {}
        if any(ip in net for net in self._trusted_networks):
            return self._scheme_headers
        return {}

    def count_request(self):
        """Count a request towards max_requests; stop when it is reached."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self.stopping.set()


class Connection:
    """Serve the HTTP/1.1 requests of one client socket, in order."""

    __slots__ = ("worker", "sock", "addr", "parser", "deadline", "expired",
                 "response", "body_wait", "reading", "timeout_error",
                 "timeout_answered", "wait_first")

    def __init__(self, worker, listener, sock, addr):
        self.worker = worker
        self.sock = sock
        self.addr = addr
        self.parser = http.RequestParser(
            worker.connection_environ(listener, sock, addr),
            worker.limits,
            worker.scheme_headers_for(addr),
            worker.header_map,
        )
        #: time.monotonic() past which the pending socket operation is cut
        #: off; 0 while none is pending (the app may take its time).
        self.deadline = 0.0
        self.expired = False
        self.response = None
        #: Seconds the current request's body may still be waited for.
        self.body_wait = 0.0
        #: Whether the pending socket operation is a body read.
        self.reading = False
        #: The 408 HttpError once a body timed out; whether it was sent.
        self.timeout_error = None
        self.timeout_answered = False
        #: Whether the next head read waits for the socket before reading
        #: (see next_request); False until the first answer is out.
        self.wait_first = False
        if isinstance(addr, tuple):
            # A streamed response is several small writes; without this
            # Nagle plus delayed ACKs can hold each one back for 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        self.parser.close()
        self.sock.close()

    def serve(self):
        while True:
            req = self.next_request()
            if req is None:
                return
            if not self.respond(req):
                return
            if not req.complete and not self.drain(req):
                return

    def expire(self):
        """Wake the blocked read or write with an OSError.

        A body read is woken with SHUT_RD only: the 408 still goes out.
        """
        self.expired = True
        try:
            self.sock.shutdown(socket.SHUT_RD if self.reading else socket.SHUT_RDWR)
        except OSError:
            pass

    def send(self, data):
        """Write all of ``data`` within ``timeout`` per blocked write."""
        io_timeout = self.worker.io_timeout
        if io_timeout:
            self.deadline = time.monotonic() + io_timeout
        try:
            # PERF: gevent's sendall() asks getsockopt(SO_SNDBUF) each call;
            # one send() nearly always takes the whole response.
            sent = self.sock.send(data)
            if sent < len(data):
                self.sock.sendall(memoryview(data)[sent:])
        finally:
            self.deadline = 0.0

    def next_request(self):
        """Return the next request head, or None to close the connection."""
        parser = self.parser
        requests = parser.requests
        if requests:
            return requests.popleft()
        self.deadline = time.monotonic() + self.worker.header_timeout
        sock = self.sock
        try:
            while not parser.closed:
                if self.wait_first:
                    data = _recv_when_readable(sock)
                else:
                    data = sock.recv(RECV_SIZE)
                if not data:
                    return None  # closed, or too slow (gunicorn: silently)
                parser.feed(data)
                if requests:
                    return requests.popleft()
        finally:
            self.deadline = 0.0
        if parser.error is not None:
            self.send_error(parser.error, 1)
        return None

    def pull(self, req):
        """Read more of ``req``'s body from the socket into the parser."""
        if req.body_error is not None:
            raise req.body_error
        if self.parser.closed:
            raise ClientDisconnected("request body cut short")
        if req.expect_continue:
            req.expect_continue = False
            response = self.response
            if not req.discard and response is not None and response.head is None:
                self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        # One budget for all the waits of this body, not one per read: a
        # byte a second would otherwise hold the greenlet for ever.
        io_timeout = self.worker.io_timeout
        if io_timeout:
            left = self.body_wait
            if left <= 0:
                raise self.body_timed_out(req)
            start = time.monotonic()
            self.deadline = start + left
        self.reading = True
        try:
            data = self.sock.recv(RECV_SIZE)
        except OSError:
            if not self.expired:  # woken by expire(): the budget is spent
                raise
            data = b""
        finally:
            self.reading = False
            self.deadline = 0.0
            if io_timeout:
                self.body_wait = left - (time.monotonic() - start)
        if not data:
            if self.expired:
                raise self.body_timed_out(req)
            # Nothing more will come: say so, so the answer does not offer
            # keep-alive on a connection that is over.
            self.parser.close()
            raise ClientDisconnected("connection closed during the request body")
        self.parser.feed(data)
        if req.body_error is not None:
            raise req.body_error

    def body_timed_out(self, req):
        """Answer 408 unless answered already, cut the connection; return
        the error for the app's read to raise."""
        self.parser.close()
        worker = self.worker
        error = self.timeout_error = http.HttpError(
            408, "request_timeout",
            f"request body not received within {worker.io_timeout:g}s")
        response = self.response
        if response is not None and response.head is None:
            self.timeout_answered = True
            self.send_error(error, req.version[1])  # logs the one line
        else:
            addr = self.addr[0] if isinstance(self.addr, tuple) else self.addr
            worker.log.warning("Request body timed out from ip=%s: %s (%s %s)",
                               addr, error.message, req.method, req.uri)
        # Nothing more in or out: an answer the app still tries fails
        # quietly (app_failed).
        self.expire()
        return RequestTimeout(error.message)

    def reusable(self, req):
        """Whether the connection can outlive ``req`` (before its answer)."""
        worker = self.worker
        if not (req.keep_alive and worker.alive and worker.keepalive):
            return False
        if req.complete:
            return True
        if self.parser.closed:
            # The rest of this body can never be read (broken framing, or
            # the client went away): the next request has no start.
            return False
        # A client waiting for 100 Continue may never send the body, and a
        # large unread body costs more to drain than a new connection.
        return (not req.expect_continue
                and req.content_length - req.body_received <= DRAIN_LIMIT)

    def drain(self, req):
        """Skip the unread rest of ``req``'s body; False if not worth it."""
        if not self.reusable(req):
            return False
        req.discard = True
        req.body.clear()
        try:
            while not req.complete:
                if req.body_received > DRAIN_LIMIT:
                    return False
                self.pull(req)
        except (http.HttpError, ClientDisconnected):
            return False
        return True

    def respond(self, req):
        """Run the app for ``req``; return whether to keep the connection."""
        worker = self.worker
        worker.count_request()
        self.body_wait = worker.io_timeout
        environ = req.environ
        if req.complete:
            # PERF: the whole body (usually none) is here already: a C
            # BytesIO reads faster than the lazy reader.
            environ["wsgi.input"] = BytesIO(req.body)
        else:
            environ["wsgi.input"] = RequestBody(self, req)
        response = self.response = Response(self, req)
        start = time.perf_counter() if worker.log_access else 0.0
        try:
            if worker.pre_request is not None:
                worker.pre_request(worker, req)
            response.run(worker.wsgi)
            keep = response.keep_alive
        except Exception as ex:  # noqa: BLE001 - an application error is answered, not fatal
            keep = self.app_failed(req, response, ex)
        finally:
            self.response = None
            # The client sends its next request only once it has this answer.
            self.wait_first = type(self.sock) is _PLAIN_SOCKET
            if worker.log_access:
                elapsed = timedelta(seconds=time.perf_counter() - start)
                worker.log.access(response, req, environ, elapsed)
            if worker.post_request is not None:
                try:
                    worker.post_request(worker, req, environ, response)
                except Exception:
                    worker.log.exception("Exception in post_request hook")
        return keep

    def app_failed(self, req, response, ex):
        """Answer a failed request if still possible; always close."""
        log = self.worker.log
        if self.timeout_error is not None:
            # body_timed_out() logged it and answered if it still could;
            # whatever the app did after its read failed cannot go out.
            if self.timeout_answered:
                error = self.timeout_error
                response.status = f"{error.status} {error.code}"
                response.headers = []
                response.sent = 0
            log.debug("Request body timed out: %s", ex)
            return False
        if self.client_gone(ex):
            # Checked first: the answer may have failed to go out because
            # the client left, which is no error of the app's either.
            log.debug("Client went away: %s", ex)
            return False
        if response.head is not None:
            # Part of the response is on the wire: all we can do is cut it.
            log.exception("Error handling request %s %s", req.method, req.uri)
            return False
        if isinstance(ex, http.HttpError):
            error = ex
        else:
            log.exception("Error handling request %s %s", req.method, req.uri)
            error = http.HttpError(500, "internal_error", "internal server error")
        response.status = f"{error.status} {error.code}"
        response.headers = []
        self.send_error(error, req.version[1])
        return False

    def client_gone(self, ex):
        """Whether ``ex`` means the client closed, reset or stalled out."""
        return isinstance(ex, ClientDisconnected) or (
            isinstance(ex, OSError) and (self.expired or ex.errno in _CLOSE_QUIETLY))

    def send_error(self, error, minor):
        request_id = http.new_request_id()
        traceparent = http.new_traceparent()
        if error.status < 500:
            addr = self.addr[0] if isinstance(self.addr, tuple) else self.addr
            self.worker.log.warning("Invalid request from ip=%s: %s (request_id=%s)",
                                    addr, error.message, request_id)
        try:
            self.send(http.error_response(error, request_id, minor, traceparent))
        except OSError:
            self.worker.log.debug("Failed to send error message.")


#: The socket class whose internals _recv_when_readable relies on; TLS
#: sockets (which may hold decrypted bytes the kernel no longer shows as
#: readable) always read through their own recv().
_PLAIN_SOCKET = gevent.socket.socket


def _recv_when_readable(sock):
    """``sock.recv(RECV_SIZE)``, waiting for the socket first.

    PERF: a kept-alive client sends its next request only after it read the
    answer, so a read right after an answer nearly always finds nothing:
    gevent's recv() then pays a failed recv syscall and an OSError raised
    and caught before it waits. Waiting first (gevent's own wait on the
    socket's read watcher) skips both: the cached product read 19.2k ->
    21.2k req/s, 51.4 -> 46.4 us of worker CPU per request (bench/README.md,
    "Reads after an answer wait for the socket").
    """
    event = sock._read_event
    if event is None:  # closed: recv() raises what a closed socket does
        return sock.recv(RECV_SIZE)
    sock._wait(event)
    try:
        return sock._sock.recv(RECV_SIZE)
    except BlockingIOError:  # woken without data after all: gevent's recv() waits again
        return sock.recv(RECV_SIZE)


class RequestBody:
    """``wsgi.input`` for a body still arriving: reads pull from the socket.

    Only as many bytes are read from the socket as the app asks for (one
    socket read at a time); ``Expect: 100-continue`` is answered on the
    first read that needs the network.
    """

    __slots__ = ("_conn", "_req")

    def __init__(self, conn, req):
        self._conn = conn
        self._req = req

    def read(self, size=-1):
        req = self._req
        buf = req.body
        if size is None or size < 0:
            while not req.complete:
                self._conn.pull(req)
            size = len(buf)
        else:
            while len(buf) < size and not req.complete:
                self._conn.pull(req)
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def readline(self, size=-1):
        req = self._req
        buf = req.body
        start = 0
        while True:
            end = buf.find(b"\n", start) + 1
            if end:
                break
            if req.complete or 0 <= size <= len(buf):
                end = len(buf)
                break
            start = len(buf)
            self._conn.pull(req)
        if 0 <= size < end:
            end = size
        data = bytes(buf[:end])
        del buf[:end]
        return data

    def readlines(self, hint=-1):
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return iter(self.readline, b"")


class Response:
    """The WSGI side of one response: start_response, write, the result.

    ``status``, ``headers`` and ``sent`` are what gunicorn's access log reads.
    """

    __slots__ = ("conn", "req", "status", "headers", "head", "sent", "keep_alive")

    def __init__(self, conn, req):
        self.conn = conn
        self.req = req
        self.status = None
        self.headers = []
        self.head = None
        self.sent = 0
        self.keep_alive = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.head is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice")
        self.status = status
        self.headers = headers
        return self.write

    def run(self, app):
        """Call the app and send what it returns (PEP 3333)."""
        result = app(self.req.environ, self.start_response)
        try:
            # PERF: Falcon and most frameworks return [body]: the head and
            # the body leave in one sendall, with no chunked framing.
            if type(result) is list and len(result) == 1 and self.head is None:
                self._send_head(result[0])
            else:
                for chunk in result:
                    if chunk:
                        self.write(chunk)
                if self.head is None:
                    self._send_head(b"")
                elif self.head.chunked:
                    self.conn.send(b"0\r\n\r\n")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        head = self.head
        assert head is not None  # sent by the loop above
        # Fewer bytes than the announced Content-Length leave the client
        # waiting for the rest: only closing ends that response.
        self.keep_alive = head.keep_alive and (head.length < 0 or head.omit_body
                                               or self.sent >= head.length)

    def _encode_head(self, body):
        if self.status is None:
            raise AssertionError("the application did not call start_response()")
        req = self.req
        self.head = head = http.encode_response(
            self.status, self.headers, req.version[1], self.conn.reusable(req),
            req.method == "HEAD", body)
        self.sent = head.body_sent
        return head

    def _send_head(self, body):
        if type(body) is not bytes:
            raise TypeError(f"{body!r} is not bytes")
        self.conn.send(self._encode_head(body).data)

    def write(self, data):
        """Send body bytes: the WSGI write() callable and the result loop."""
        if type(data) is not bytes:
            raise TypeError(f"{data!r} is not bytes")
        head = self.head
        if head is None:
            head = self._encode_head(None)
            # PERF: the head and the first chunk leave in one sendall.
            out = head.data
        else:
            out = b""
        if data and not head.omit_body:
            if head.length >= 0:
                data = data[:max(head.length - self.sent, 0)]
            if data:
                self.sent += len(data)
                out += b"%x\r\n%b\r\n" % (len(data), data) if head.chunked else data
        if out:
            self.conn.send(out)
