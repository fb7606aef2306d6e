"""Refresh tokens: stored as sha256 hashes, grouped in families (one per login)."""

from __future__ import annotations

from datetime import timedelta

# Spend a live token and mint its child in ONE statement: the UPDATE's row
# lock makes two concurrent refreshes of one token serialize, and the loser
# finds used_at set and gets no row.
_ROTATE = """
WITH spent AS (
    UPDATE refresh_tokens SET used_at = now()
    WHERE token_hash = %(old)s AND used_at IS NULL AND revoked_at IS NULL
      AND expires_at > now()
    RETURNING id, user_id, family_id, expires_at
), child AS (
    INSERT INTO refresh_tokens (user_id, family_id, parent_id, token_hash, expires_at)
    SELECT user_id, family_id, id, %(new)s, expires_at FROM spent
    RETURNING user_id
)
SELECT child.user_id::text, users.role FROM child JOIN users ON users.id = child.user_id
"""


def create_family(cur, user_id: str, token_hash: bytes, lifetime: timedelta) -> None:
    cur.execute(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)"
        " VALUES (%s, gen_random_uuid(), %s, now() + %s)",
        (user_id, token_hash, lifetime),
    )


def rotate(cur, old_hash: bytes, new_hash: bytes) -> tuple[str, str] | None:
    """Spend ``old_hash`` and store ``new_hash`` as its child: ``(user_id, role)``."""
    cur.execute(_ROTATE, {"old": old_hash, "new": new_hash})
    return cur.fetchone()


def find(cur, token_hash: bytes) -> tuple[str, str, bool] | None:
    """``(family_id, user_id, spent_or_revoked)`` of a stored token."""
    cur.execute(
        "SELECT family_id::text, user_id::text,"
        " (used_at IS NOT NULL OR revoked_at IS NOT NULL) FROM refresh_tokens"
        " WHERE token_hash = %s",
        (token_hash,),
    )
    return cur.fetchone()


def find_live(cur, token_hash: bytes) -> tuple[str, str] | None:
    """``(family_id, user_id)`` of a token that is neither revoked nor expired."""
    cur.execute(
        "SELECT family_id::text, user_id::text FROM refresh_tokens"
        " WHERE token_hash = %s AND revoked_at IS NULL AND expires_at > now()",
        (token_hash,),
    )
    return cur.fetchone()


def revoke_family(cur, family_id: str) -> int:
    cur.execute(
        "UPDATE refresh_tokens SET revoked_at = now()"
        " WHERE family_id = %s AND revoked_at IS NULL",
        (family_id,),
    )
    return cur.rowcount


def revoke_user(cur, user_id: str) -> int:
    cur.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    )
    return cur.rowcount
