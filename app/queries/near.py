"""Near-cache invalidations between nodes: Postgres LISTEN/NOTIFY (app/near_listener.py)."""

from __future__ import annotations

from psycopg2 import sql

#: Where writers announce the keys they invalidated.
CHANNEL = "peregrine_near"

# NOTIFY payloads must stay under 8000 bytes.
PAYLOAD_LIMIT = 7900


def payloads(node: str, keys: list[str]) -> list[str]:
    """``node`` then the keys, one per line, split into payloads NOTIFY accepts.

    Sizes are counted in UTF-8 bytes, what the limit counts; a cache key is
    at most 250 bytes (memcached's limit, app/cache.py), so one always fits.
    """
    base = len(node.encode())
    found, lines, size = [], [node], base
    for k in keys:
        length = 1 + len(k.encode())
        if size + length > PAYLOAD_LIMIT and len(lines) > 1:
            found.append("\n".join(lines))
            lines, size = [node], base
        lines.append(k)
        size += length
    found.append("\n".join(lines))
    return found


def parse(payload: str) -> tuple[str, list[str]]:
    """The announcing node and the keys of a payload made by :func:`payloads`."""
    node, _, rest = payload.partition("\n")
    return node, rest.split("\n") if rest else []


def announce(cur, node: str, keys: list[str]) -> None:
    """Tell every listener that ``node`` invalidated ``keys`` (committed at once).

    Not data: a crash may lose it with the listeners it was for, so the
    commit does not wait for the WAL flush.
    """
    cur.execute("SET LOCAL synchronous_commit = off;"
                " SELECT count(pg_notify(%s, p)) FROM unnest(%s::text[]) AS p",
                (CHANNEL, payloads(node, keys)))


def listen(cur, *channels: str) -> None:
    cur.execute(sql.SQL("; ").join(sql.SQL("LISTEN {}").format(sql.Identifier(c))
                                   for c in channels))


def heartbeat(cur, channel: str, seq: int) -> None:
    """Notify ``channel`` (this session's own) with ``seq``."""
    cur.execute("SELECT pg_notify(%s, %s)", (channel, str(seq)))


def unasync(cur) -> None:
    """This session's heartbeats are not data either."""
    cur.execute("SET synchronous_commit = off")
