"""Is each server the configuration names answering? Checked once, at ``serve``.

A plain TCP connect (or a unix socket's presence) with a short timeout: enough
to tell "nothing listens there" from "up", without logging in anywhere.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import parse_qs, unquote, urlsplit

from app.config import Config

TIMEOUT = 1.0


def _postgres_address(url: str) -> tuple[str, int] | None:
    """host and port of a postgresql:// URL or key=value DSN (None: a unix socket dir)."""
    if "://" in url:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        host = parts.hostname or unquote(query.get("host", [""])[0])
        port = parts.port or int(query.get("port", ["5432"])[0])
    else:
        fields = dict(item.split("=", 1) for item in url.split() if "=" in item)
        host, port = fields.get("host", ""), int(fields.get("port", "5432"))
    if not host:
        host = "/var/run/postgresql"
    if host.startswith("/"):
        return None if os.path.exists(os.path.join(host, f".s.PGSQL.{port}")) else (host, port)
    return host, port


def _answers(host: str, port: int) -> bool:
    if host.startswith("/"):
        return False
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
        return True
    except OSError:
        return False


def unreachable(config: Config) -> list[str]:
    """One line per configured server that does not answer."""
    problems = []
    try:
        address = _postgres_address(config.database_url)
    except ValueError:
        address = None  # a port that is not a number: libpq will say so itself
    if address is not None and not _answers(*address):
        problems.append(f"Postgres at {address[0]}:{address[1]} does not answer "
                        "(PEREGRINE_DATABASE_URL)")
    for host, port in config.memcached_servers:
        if not _answers(host, port):
            problems.append(f"memcached at {host}:{port} does not answer "
                            "(PEREGRINE_MEMCACHED_SERVERS)")
    return problems
