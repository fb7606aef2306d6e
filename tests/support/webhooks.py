"""A local webhook endpoint and real ``python -m app deliver`` processes for tests."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from standardwebhooks.webhooks import Webhook

REPO = Path(__file__).resolve().parent.parent.parent

#: Settings that make the worker fast enough for tests and let it reach 127.0.0.1.
FAST = {
    "PEREGRINE_WEBHOOK_ALLOW_HTTP": "1",
    "PEREGRINE_WEBHOOK_ALLOW_PRIVATE": "1",
    "PEREGRINE_WEBHOOK_POLL_INTERVAL": "0.2",
    "PEREGRINE_WEBHOOK_TIMEOUT": "1",
    "PEREGRINE_WEBHOOK_LEASE": "2",
    "PEREGRINE_WEBHOOK_RETRY_BASE": "0.05",
    "PEREGRINE_WEBHOOK_RETRY_MAX_DELAY": "0.2",
    "PEREGRINE_LOG_LEVEL": "info",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict:
        """The payload, if ``secret`` signed it (standardwebhooks raises otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Sink:
    """An HTTP endpoint on 127.0.0.1 that records what it is sent.

    ``answers`` is consumed one per request: ``(status, headers)`` or
    ``(status, headers, body)``; when it is empty every request gets 200 "ok".
    ``hold`` (an Event) makes each request wait for it before answering.
    ``delay`` slows every answer down.
    """

    answers: list = field(default_factory=list)
    hold: threading.Event | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self._lock = threading.Lock()
        self.arrived = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                sink._arrive(Received(self.path, headers, body, time.monotonic()), self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _arrive(self, received: Received, handler) -> None:
        key = received.headers.get("webhook-id", "")
        with self._lock:
            self.received.append(received)
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            self.max_in_flight[key] = max(self.max_in_flight.get(key, 0), self.in_flight[key])
            status, headers, *body = self.answers.pop(0) if self.answers else (200, {})
            content = body[0] if body else b"ok"
        self.arrived.set()
        try:
            if self.hold is not None:
                self.hold.wait(30)
            if self.delay:
                time.sleep(self.delay)
            try:
                handler.send_response(status)
                for name, value in headers.items():
                    handler.send_header(name, value)
                handler.send_header("Content-Length", str(len(content)))
                handler.end_headers()
                handler.wfile.write(content)
            except OSError:
                pass  # the worker is gone
        finally:
            with self._lock:
                self.in_flight[key] -= 1

    def ids(self) -> list[str]:
        with self._lock:
            return [r.webhook_id for r in self.received]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


class DeliveryWorker:
    """A real ``python -m app deliver`` process."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> DeliveryWorker:
        """Start it and wait until it LISTENs (so no NOTIFY is missed from now on)."""
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "deliver"], cwd=REPO,
                                     env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "delivering webhooks: listening" in self.log():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the worker did not start listening in {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
