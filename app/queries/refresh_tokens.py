"""Refresh tokens: stored as sha256 hashes, grouped in families (one per login).

A family's row in ``refresh_families`` is the one truth about revocation,
and the lock that orders rotation against revocation:

* rotation locks the family row (``FOR NO KEY UPDATE``) and goes on only if
  the family is not revoked, then spends the token and mints its child;
* revocation ``UPDATE``\\s the family row.

Under READ COMMITTED, whichever of the two reaches the row second waits for
the first to commit and then re-checks the row: a revocation that committed
first makes the rotation find no live family (no child is minted); a rotation
that committed first has its child in a family the revocation then marks
revoked, so the child can never refresh either.
"""

from __future__ import annotations

from datetime import timedelta

_ROTATE = """
WITH family AS (
    SELECT id FROM refresh_families
    WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = %(old)s)
      AND revoked_at IS NULL
    FOR NO KEY UPDATE
), spent AS (
    -- The row lock on the token makes two refreshes of one token serialize:
    -- the loser re-checks, finds used_at set and gets no row.
    UPDATE refresh_tokens t SET used_at = now()
    FROM family
    WHERE t.family_id = family.id AND t.token_hash = %(old)s
      AND t.used_at IS NULL AND t.expires_at > now()
    RETURNING t.id, t.user_id, t.family_id, t.expires_at
), child AS (
    INSERT INTO refresh_tokens (user_id, family_id, parent_id, token_hash, expires_at)
    SELECT user_id, family_id, id, %(new)s, expires_at FROM spent
    RETURNING user_id
)
SELECT child.user_id::text, users.role FROM child JOIN users ON users.id = child.user_id
"""


class CredentialsChanged(Exception):
    """The password a login verified is no longer the account's password."""


def create_family(cur, user_id: str, verified_hash: str, token_hash: bytes,
                  lifetime: timedelta) -> None:
    """Start a family for a login that verified ``verified_hash``.

    ``FOR SHARE`` on the user row orders this against a password change (which
    updates that row and revokes the user's families in one transaction): a
    change that commits first makes the hash differ here, so the login fails;
    a login that locks first commits its family before the change's
    revocation runs, and that revocation then covers it.
    """
    cur.execute("SELECT 1 FROM users WHERE id = %s AND password_hash = %s FOR SHARE",
                (user_id, verified_hash))
    if cur.fetchone() is None:
        raise CredentialsChanged(user_id)
    cur.execute(
        "WITH family AS ("
        " INSERT INTO refresh_families (user_id) VALUES (%s) RETURNING id, user_id)"
        " INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)"
        " SELECT user_id, id, %s, now() + %s FROM family",
        (user_id, token_hash, lifetime),
    )


def rotate(cur, old_hash: bytes, new_hash: bytes) -> tuple[str, str] | None:
    """Spend ``old_hash`` and store ``new_hash`` as its child: ``(user_id, role)``."""
    cur.execute(_ROTATE, {"old": old_hash, "new": new_hash})
    return cur.fetchone()


def find(cur, token_hash: bytes) -> tuple[str, str, bool] | None:
    """``(family_id, user_id, spent)`` of a stored token."""
    cur.execute(
        "SELECT family_id::text, user_id::text, used_at IS NOT NULL FROM refresh_tokens"
        " WHERE token_hash = %s",
        (token_hash,),
    )
    return cur.fetchone()


def find_live(cur, token_hash: bytes) -> tuple[str, str] | None:
    """``(family_id, user_id)`` of an unexpired token whose family is not revoked."""
    cur.execute(
        "SELECT t.family_id::text, t.user_id::text FROM refresh_tokens t"
        " JOIN refresh_families f ON f.id = t.family_id"
        " WHERE t.token_hash = %s AND f.revoked_at IS NULL AND t.expires_at > now()",
        (token_hash,),
    )
    return cur.fetchone()


def revoke_family(cur, family_id: str) -> int:
    """Revoke one family (waits for a rotation of it in flight); 1 if it was live."""
    cur.execute(
        "UPDATE refresh_families SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (family_id,),
    )
    return cur.rowcount


def revoke_user(cur, user_id: str) -> int:
    """Revoke every family of a user; the number of live families revoked."""
    cur.execute(
        "UPDATE refresh_families SET revoked_at = now()"
        " WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    )
    return cur.rowcount
