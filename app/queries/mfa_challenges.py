"""The mfa_challenges table: the pending second step of an MFA login."""

from __future__ import annotations

from datetime import timedelta

_CREDENTIALS = "sha256(convert_to(u.password_hash, 'UTF8'))"


def insert(cur, token_hash: bytes, user_id: str, credentials: bytes,
           lifetime: timedelta) -> bool:
    """A challenge bound to ``credentials`` (the sha256 of the password hash verified).

    False, and nothing stored, if the password changed since it was verified.
    """
    cur.execute("INSERT INTO mfa_challenges (token_hash, user_id, credentials, expires_at)"
                f" SELECT %s, u.id, %s, now() + %s FROM users u WHERE u.id = %s"
                f" AND {_CREDENTIALS} = %s",
                (token_hash, credentials, lifetime, user_id, credentials))
    return cur.rowcount == 1


def open_for(cur, token_hash: bytes, max_failures: int) -> tuple[str, str, str] | None:
    """Lock a live challenge: ``(user_id, role, password_hash)``, or None.

    Live: not spent, not expired, under ``max_failures`` wrong codes, and the
    password unchanged since it was issued.
    """
    cur.execute(
        "SELECT u.id::text, u.role, u.password_hash FROM mfa_challenges c"
        " JOIN users u ON u.id = c.user_id"
        f" WHERE c.token_hash = %s AND c.used_at IS NULL AND c.expires_at > now()"
        f" AND c.failures < %s AND c.credentials = {_CREDENTIALS}"
        " FOR UPDATE OF c", (token_hash, max_failures))
    return cur.fetchone()


def spend(cur, token_hash: bytes) -> None:
    cur.execute("UPDATE mfa_challenges SET used_at = now() WHERE token_hash = %s", (token_hash,))


def fail(cur, token_hash: bytes) -> int:
    """Count a wrong code; the failures so far."""
    cur.execute("UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = %s"
                " RETURNING failures", (token_hash,))
    row = cur.fetchone()
    return row[0] if row else 0


def prune(cur) -> int:
    cur.execute("DELETE FROM mfa_challenges WHERE expires_at < now() - interval '1 day'")
    return cur.rowcount
