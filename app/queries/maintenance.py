"""Housekeeping: rows that have outlived their purpose."""

from __future__ import annotations

from datetime import timedelta


def prune_idempotency_keys(cur, older_than: timedelta) -> int:
    """Forget Idempotency-Key records older than ``older_than`` (a retry window)."""
    cur.execute("DELETE FROM idempotency_keys WHERE created_at < now() - %s", (older_than,))
    return cur.rowcount


def prune_refresh_tokens(cur, older_than: timedelta) -> int:
    """Delete refresh tokens that expired more than ``older_than`` ago.

    Spent and revoked tokens are kept until then, so reuse of a stolen token
    is still detected (and its family revoked) for as long as it could work.
    """
    cur.execute("DELETE FROM refresh_tokens WHERE expires_at < now() - %s", (older_than,))
    deleted = cur.rowcount
    # A family outlives its last token only as an empty row: drop those too.
    cur.execute(
        "DELETE FROM refresh_families f WHERE f.created_at < now() - %s"
        " AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id)",
        (older_than,),
    )
    return deleted
