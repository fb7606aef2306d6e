"""What every abuse check shares: rows of the table, the error envelope, raw HTTP."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field

from tests.faults.__main__ import Client


@dataclass
class Row:
    """One line of the table: a check, how many cases it ran, and what failed."""

    check: str
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    note: str = ""

    def case(self, ok: bool, failure: str) -> bool:
        self.cases += 1
        if not ok:
            self.failures.append(failure)
        return ok

    @property
    def ok(self) -> bool:
        return not self.failures and self.cases > 0

    @property
    def result(self) -> str:
        if self.cases == 0:
            return "FAILED: no case ran"
        if self.failures:
            return f"FAILED {len(self.failures)}/{self.cases}"
        return "ok" + (f" ({self.note})" if self.note else "")


def envelope_problem(status: int, headers: dict, body: bytes,
                     code: str | None = None) -> str | None:
    """Why a 4xx/5xx answer is not the contract's JSON error envelope (None when it is)."""
    ctype = headers.get("content-type", "")
    if not ctype.startswith("application/json"):
        return f"content-type {ctype!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"body is not JSON: {body[:80]!r}"
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) \
            or not isinstance(error.get("message"), str):
        return f"no error envelope: {body[:120]!r}"
    if not isinstance(doc.get("request_id"), str):
        return "envelope without request_id"
    if code is not None and error["code"] != code:
        return f"code {error['code']!r}, expected {code!r}"
    return None


def short(body: bytes, limit: int = 160) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("..." if len(body) > limit else "")


def healthz_within(port: int, seconds: float = 1.0) -> float | None:
    """Seconds /healthz took on a new connection, or None past ``seconds``/on error."""
    started = time.monotonic()
    try:
        status = Client(port, seconds).call("GET", "/healthz")[0]
    except OSError:
        return None
    took = time.monotonic() - started
    return took if status == 200 and took <= seconds else None


# -- raw HTTP ------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class RawExchange:
    responses: list[RawResponse]
    closed: bool          # the server closed the connection (EOF or reset)
    reset: bool           # ... with a reset
    seconds: float
    leftover: bytes = b""  # bytes that did not parse as a response


def parse_responses(data: bytes) -> tuple[list[RawResponse], bytes]:
    """Split raw bytes into HTTP/1.1 responses (Content-Length or chunked framed)."""
    out = []
    while data:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0 or not data.startswith(b"HTTP/1."):
            break
        lines = data[:head_end].decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ")[1])
        except (IndexError, ValueError):
            break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = data[head_end + 4:]
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, data = rest[:length], rest[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, data = b"", rest
            while True:
                line_end = data.find(b"\r\n")
                size = int(data[:line_end].split(b";")[0], 16)
                chunk, data = data[line_end + 2:line_end + 2 + size], data[line_end + 4 + size:]
                if size == 0:
                    break
                body += chunk
        elif status in (204, 304) or 100 <= status < 200:
            body, data = b"", rest
        else:
            body, data = rest, b""
        out.append(RawResponse(status, headers, body))
    return out, data


def raw(port: int, payload: bytes | list, timeout: float = 5.0, pause: float = 0.0,
        read_for: float | None = None) -> RawExchange:
    """Send ``payload`` (bytes, or a list of pieces sent ``pause`` apart) and read
    until the server closes, or ``read_for`` (default ``timeout``) passes."""
    started = time.monotonic()
    pieces = payload if isinstance(payload, list) else [payload]
    data, closed, reset = b"", False, False
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for n, piece in enumerate(pieces):
            if n and pause:
                time.sleep(pause)
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                reset = closed = True
                break
        deadline = started + (read_for if read_for is not None else timeout)
        while not closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    responses, leftover = parse_responses(data)
    return RawExchange(responses, closed, reset, time.monotonic() - started, leftover)


def describe(ex: RawExchange) -> str:
    if not ex.responses:
        return ("reset" if ex.reset else "closed" if ex.closed else "open, no answer") \
            + f" after {ex.seconds:.1f}s" + (f", junk {ex.leftover[:60]!r}" if ex.leftover else "")
    parts = [f"{r.status} {short(r.body, 100)}" for r in ex.responses]
    return "; ".join(parts) + (", then closed" if ex.closed else ", left open")


def new_account(port: int, email: str, password: str, ip: str) -> dict:
    """Register and log in one account: ``{id, email, access, refresh, headers}``."""
    client = Client(port)
    try:
        status, _, body = client.call("POST", "/v1/auth/register",
                                      {"email": email, "password": password, "name": "Abuse"})
        assert status == 201, body
        user_id = json.loads(body)["id"]
        status, _, body = client.call("POST", "/v1/auth/login",
                                      {"email": email, "password": password}, {"X-Real-IP": ip})
        assert status == 200, body
    finally:
        client.close()
    pair = json.loads(body)
    return {"id": user_id, "email": email, "access": pair["access_token"],
            "refresh": pair["refresh_token"],
            "headers": {"Authorization": "Bearer " + pair["access_token"]}}
