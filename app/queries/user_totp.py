"""The user_totp table: one sealed TOTP secret per account, active once confirmed."""

from __future__ import annotations


def start(cur, user_id: str, secret_sealed: bytes) -> bool:
    """Store a new, unconfirmed secret; False if a confirmed one exists (it stays)."""
    cur.execute(
        "INSERT INTO user_totp (user_id, secret_sealed) VALUES (%s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed,"
        " created_at = now(), last_step = NULL WHERE user_totp.confirmed_at IS NULL"
        " RETURNING 1", (user_id, secret_sealed))
    return cur.fetchone() is not None


def find(cur, user_id: str, *, lock: bool = False) -> tuple[bytes, bool, int | None] | None:
    """``(secret_sealed, confirmed, last_step)`` or None."""
    cur.execute("SELECT secret_sealed, confirmed_at IS NOT NULL, last_step FROM user_totp"
                " WHERE user_id = %s" + (" FOR UPDATE" if lock else ""), (user_id,))
    row = cur.fetchone()
    return None if row is None else (bytes(row[0]), row[1], row[2])


def is_active(cur, user_id: str) -> bool:
    cur.execute("SELECT 1 FROM user_totp WHERE user_id = %s AND confirmed_at IS NOT NULL",
                (user_id,))
    return cur.fetchone() is not None


def use_step(cur, user_id: str, step: int) -> bool:
    """Record ``step`` as used; False if it (or a later one) was used already.

    One conditional UPDATE: of two requests with the same code, one wins.
    """
    cur.execute("UPDATE user_totp SET last_step = %s WHERE user_id = %s"
                " AND (last_step IS NULL OR last_step < %s)", (step, user_id, step))
    return cur.rowcount == 1


def confirm(cur, user_id: str) -> None:
    cur.execute("UPDATE user_totp SET confirmed_at = now() WHERE user_id = %s", (user_id,))


def delete(cur, user_id: str) -> bool:
    cur.execute("DELETE FROM user_totp WHERE user_id = %s", (user_id,))
    return cur.rowcount == 1
