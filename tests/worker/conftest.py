"""Fixtures for the worker tests: gunicorn subprocesses and raw sockets.

Servers run ``tests/worker/echo_app.py`` from this directory (so the repo's
``gunicorn.conf.py``, which needs Postgres, is not loaded), one worker each,
on free loopback ports.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httptools
import pytest

from tests.support.processes import free_port, stop_process, wait_until_ready

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))

STOCK = "gevent"
OURS = "hotpath.worker.GeventHTTPWorker"


class Server:
    """One gunicorn master with one worker, serving echo_app."""

    def __init__(self, worker_class, *options, app="echo_app:application"):
        self.port = free_port()
        self.args = [GUNICORN, "--no-control-socket", "-w", "1", "-k", worker_class,
                     "-b", f"127.0.0.1:{self.port}", *options, app]
        self.proc = None

    def start(self, deadline=20.0):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(self.args, cwd=HERE, env=env,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        try:
            wait_until_ready(self._answers, self.proc, deadline,
                             lambda: self.proc.stderr.read() if self.proc.poll() is not None
                             else " ".join(self.args))
        except RuntimeError:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        responses, _ = exchange(self.port, b"GET /ready HTTP/1.1\r\n"
                                b"Host: t\r\nConnection: close\r\n\r\n")
        return bool(responses) and responses[0].status == 200

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self):
        stop_process(self.proc, grace=15)
        return self.proc.stderr.read() if self.proc is not None else ""


class Response:
    """One parsed HTTP response."""

    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class _ResponseCollector:
    def __init__(self):
        self.done = []
        self.current = Response()
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self):
        self.current.status = self.parser.get_status_code()

    def on_header(self, name, value):
        self.current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body):
        self.current.body += body

    def on_message_complete(self):
        self.done.append(self.current)
        self.current = Response()


def read_responses(sock, count, timeout=5.0, linger=0.3):
    """Read ``count`` final responses; return (responses, closed).

    ``closed`` is True when the server closed the connection: EOF came
    before the responses ended or within ``linger`` seconds after them.
    """
    collector = _ResponseCollector()
    parser = collector.parser
    finals = lambda: [r for r in collector.done if r.status >= 200]  # noqa: E731
    end = time.monotonic() + timeout
    while len(finals()) < count:
        sock.settimeout(max(end - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return finals(), True
        if not data:
            return finals(), True
        parser.feed_data(data)
    sock.settimeout(linger)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return finals(), False
    except ConnectionResetError:
        return finals(), True
    if data:
        raise AssertionError(f"unexpected bytes after the responses: {data!r}")
    return finals(), True


def exchange(port, raw, count=1, **kwargs):
    """Send ``raw`` on a new connection; return read_responses(...)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return read_responses(sock, count, **kwargs)


@pytest.fixture(scope="session")
def stock_server():
    server = Server(STOCK).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def our_server():
    server = Server(OURS).start()
    yield server
    server.stop()


@pytest.fixture
def server_factory():
    """Start servers with custom options; all are stopped after the test."""
    started = []

    def start(*options, worker_class=OURS):
        server = Server(worker_class, *options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
