"""The email_tokens table: single-use link tokens, stored as their sha256.

A token is bound to the account and to the address it was mailed to
(``email_key``): it is accepted only while the account still has that
address, so it cannot be spent for another account or another address.
"""

from __future__ import annotations

from datetime import timedelta

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"


def insert(cur, user_id: str, purpose: str, email_key: str, token_hash: bytes,
           lifetime: timedelta) -> None:
    cur.execute("INSERT INTO email_tokens (token_hash, user_id, purpose, email_key, expires_at)"
                " VALUES (%s, %s, %s, %s, now() + %s)",
                (token_hash, user_id, purpose, email_key, lifetime))


def live_owner(cur, token_hash: bytes, purpose: str) -> str | None:
    """The account a usable token belongs to (not spending it), or None."""
    cur.execute("SELECT t.user_id::text FROM email_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = %s AND t.purpose = %s AND t.used_at IS NULL"
                " AND t.expires_at > now() AND u.email_key = t.email_key",
                (token_hash, purpose))
    row = cur.fetchone()
    return row[0] if row else None


def spend(cur, token_hash: bytes, purpose: str) -> str | None:
    """Mark a usable token used and return its account; None if it is not usable.

    One UPDATE: of two requests presenting the same token, exactly one wins.
    """
    cur.execute("UPDATE email_tokens t SET used_at = now() FROM users u"
                " WHERE t.token_hash = %s AND t.purpose = %s AND t.used_at IS NULL"
                " AND t.expires_at > now() AND u.id = t.user_id AND u.email_key = t.email_key"
                " RETURNING t.user_id::text",
                (token_hash, purpose))
    row = cur.fetchone()
    return row[0] if row else None


def spend_all(cur, user_id: str, purpose: str) -> int:
    """Spend every outstanding token of this kind (a reset ends the others)."""
    cur.execute("UPDATE email_tokens SET used_at = now() WHERE user_id = %s AND purpose = %s"
                " AND used_at IS NULL", (user_id, purpose))
    return cur.rowcount


# One statement, the same for a known and an unknown address: the token and
# the mail are inserted only when the address has an account (zero rows
# otherwise), and the audit row is written either way, so both answers cost
# the same round trip and the same commit.
_RESET_REQUEST = """
WITH account AS (
    SELECT id, email, name FROM users WHERE email_key = %(email_key)s
), token AS (
    INSERT INTO email_tokens (token_hash, user_id, purpose, email_key, expires_at)
    SELECT %(token_hash)s, id, 'reset_password', %(email_key)s, now() + %(lifetime)s FROM account
), mail AS (
    INSERT INTO mails (user_id, recipient, template, params)
    SELECT id, email, 'reset_password',
           jsonb_build_object('name', name, 'link', %(link)s::text) FROM account
)
INSERT INTO audit_log (action, subject_id, ip, details)
SELECT 'auth.password_reset_requested', (SELECT id FROM account), %(ip)s,
       jsonb_build_object('known_user', EXISTS (SELECT 1 FROM account))
"""


def request_reset(cur, email_key: str, token_hash: bytes, link: str, lifetime: timedelta,
                  ip: str | None) -> None:
    cur.execute(_RESET_REQUEST, {"email_key": email_key, "token_hash": token_hash,
                                 "link": link, "lifetime": lifetime, "ip": ip})


def prune(cur) -> int:
    """Delete tokens that expired over a day ago (used or not)."""
    cur.execute("DELETE FROM email_tokens WHERE expires_at < now() - interval '1 day'")
    return cur.rowcount
