"""The per-node cache epochs (see app/cache_epochs.py and migration 0003)."""

from __future__ import annotations


def current(cur, nodes: list[str]) -> dict[str, int]:
    """The epoch of each of ``nodes`` that has a row."""
    cur.execute("SELECT node, epoch FROM cache_epochs WHERE node = ANY(%s)", (nodes,))
    return dict(cur.fetchall())


def create_missing(cur, nodes: list[str]) -> None:
    """Give nodes without a row a fresh epoch (never 0: see the migration)."""
    cur.execute(
        "INSERT INTO cache_epochs (node, epoch)"
        " SELECT node, nextval('cache_epoch_seq') FROM unnest(%s::text[]) AS node"
        " ON CONFLICT (node) DO NOTHING",
        (nodes,),
    )


def bump(cur, node: str) -> int:
    """Move ``node`` to an epoch never used before; return it."""
    # GREATEST: strictly increasing even if someone reset the sequence.
    cur.execute(
        "INSERT INTO cache_epochs (node, epoch) VALUES (%s, nextval('cache_epoch_seq'))"
        " ON CONFLICT (node) DO UPDATE"
        " SET epoch = GREATEST(excluded.epoch, cache_epochs.epoch + 1), bumped_at = now()"
        " RETURNING epoch",
        (node,),
    )
    return cur.fetchone()[0]
