"""One webhook attempt over HTTP, with urllib3.

urllib3 is plain blocking sockets, so under gevent's monkey patching (the
delivery worker patches at start) every attempt is a cooperative greenlet;
it lets the connection go to the address app/webhooks/targets.py checked,
while TLS still verifies the certificate (and sends SNI) for the host name
in the URL. No redirect is followed, no retry is made here (the worker's
schedule owns retries), and only the first bytes of the answer are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import urllib3

from app.webhooks.targets import Target

#: Bytes of the endpoint's answer kept for the deliveries listing.
EXCERPT_BYTES = 200


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    location: str | None
    excerpt: str


def post(target: Target, address: str, body: bytes, headers: dict[str, str],
         timeout: float, *, ca_certs: str | None = None) -> Answer:
    """POST ``body`` to ``target`` at ``address``; urllib3 errors propagate.

    ``ca_certs`` replaces the system's trusted certificates (a PEM file).
    """
    common: dict[str, Any] = {
        "port": target.port, "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        "retries": False, "maxsize": 1}
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, server_hostname=target.host,
                                           assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=ca_certs,
                                           **common)
    else:
        pool = urllib3.HTTPConnectionPool(address, **common)
    try:
        response = pool.urlopen(
            "POST", target.path, body=body,
            headers={**headers, "Host": target.host_header,
                     "Content-Type": "application/json", "User-Agent": "Peregrine-Webhooks/1"},
            redirect=False, retries=False, assert_same_host=False, preload_content=False)
        try:
            head = response.read(EXCERPT_BYTES, decode_content=False)
        finally:
            response.close()
        return Answer(status=response.status,
                      retry_after=response.headers.get("Retry-After"),
                      location=response.headers.get("Location"),
                      excerpt=excerpt(head))
    finally:
        pool.close()


def excerpt(raw: bytes, limit: int = EXCERPT_BYTES) -> str:
    """Printable text of at most ``limit`` characters (no control characters, no NUL)."""
    text = raw[:limit].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()[:limit]
