"""Typed stub of the compiled HTTP twin; ``hotpath._http_py`` is the spec."""

from collections import deque
from typing import Any

from hotpath._http_errors import HttpError as HttpError

class Request:
    """One request whose head is complete; its body may still be arriving."""

    environ: dict[str, Any]
    method: str | None
    uri: str | None
    path: str | None
    query: str | None
    version: tuple[int, int]
    headers: list[tuple[str, str]]
    keep_alive: bool
    expect_continue: bool
    content_length: int
    chunked: bool
    body: bytearray
    body_received: int
    complete: bool
    discard: bool
    body_error: Exception | None
    def __init__(self, environ: dict[str, Any]) -> None: ...

class RequestParser:
    """Feed bytes in, take complete request heads out of ``requests``.

    Protocol errors never raise from ``feed``: ``error`` holds the HttpError
    to answer after the queued requests, ``closed`` says none will follow.
    """

    requests: deque[Request]
    error: Exception | None
    closed: bool
    def __init__(
        self,
        environ: dict[str, Any],
        limits: tuple[int, int, int],
        secure_scheme_headers: dict[str, str] | None = None,
        header_map: str = "drop",
    ) -> None: ...
    def feed(self, data: bytes) -> None:
        """Parse ``data``; protocol errors are recorded, never raised."""
    def close(self) -> None:
        """Break the parser <-> protocol reference cycle."""

class ResponseHead:
    """What ``encode_response`` decided, and the bytes to send first."""

    data: bytes
    status_code: int
    length: int
    chunked: bool
    keep_alive: bool
    omit_body: bool
    body_sent: int

def http_date() -> str:
    """Return the IMF-fixdate for now, formatted once per second."""

def encode_response(
    status: str,
    headers: list[tuple[str, str]],
    minor: int,
    keep_alive: bool,
    head_request: bool,
    body: bytes | None = None,
) -> ResponseHead:
    """Validate a WSGI status and headers; return a ResponseHead.

    Raises TypeError or ValueError when the application broke WSGI or HTTP
    rules; ``body`` (one bytes chunk) is appended and sets Content-Length.
    """
