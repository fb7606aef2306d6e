"""A tiny HTTP client for tests against live servers (stdlib only)."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


def request(url: str, method: str = "GET", body=None, headers=None, timeout: float = 10.0):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path or "/", body=body, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    return exchange_until_closed(port, payload, timeout)[0]


def exchange_until_closed(port: int, payload: bytes,
                          timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send raw bytes; return what the server sent and whether it closed the connection.

    ``False`` means the server kept the connection open for ``timeout``.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return b"".join(chunks), False
            except ConnectionResetError:
                return b"".join(chunks), True
            if not data:
                return b"".join(chunks), True
            chunks.append(data)
