"""statsd metrics, or a no-op sink when no address is configured.

One UDP client per worker process, created after the fork (the factory runs
in the worker). Sending to an IP literal never blocks on DNS, and UDP errors
are swallowed by the client, so metrics can never take the service down.
"""

from __future__ import annotations

import socket

import statsd

PREFIX = "peregrine"


class NullMetrics:
    """Accepts every metric and drops it."""

    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, ms: float) -> None:
        pass

    def gauge(self, name: str, value: float) -> None:
        pass


def create(addr: tuple[str, int] | None, prefix: str = PREFIX):
    if addr is None:
        return NullMetrics()
    host, port = addr
    # Resolve once, here; statsd would otherwise keep the name.
    host = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0]
    return statsd.StatsClient(host, port, prefix=prefix)


def route_name(method: str, template: str | None) -> str:
    """``GET /v1/products/{id}`` -> ``v1.products._id_.get`` (bounded cardinality)."""
    if not template:
        return f"unmatched.{method.lower()}"
    parts = [p.replace("{", "_").replace("}", "_") for p in template.strip("/").split("/") if p]
    return ".".join(parts + [method.lower()]) if parts else f"root.{method.lower()}"
