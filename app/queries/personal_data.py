"""What one account's export reads and its deletion changes, across tables.

Kept together so that one module says what "everything stored about a
user" is: the user row and what hangs off it (cascading in the schema),
its orders, its sessions (refresh families) and the audit entries about it.
"""

from __future__ import annotations

import msgspec

from app.schemas.personal_data import AuditEntryOut, SessionOut

#: What a deleted account's orders keep as their shipping address: the order
#: stays readable in the shape the API declares, with nothing of the person.
REDACTED_ADDRESS = {"line1": "[removed]", "city": "[removed]", "postal_code": "[removed]",
                    "country": "ZZ"}


def sessions(cur, user_id: str) -> list[SessionOut]:
    cur.execute(
        "SELECT f.id::text, f.created_at, f.revoked_at, max(t.issued_at), max(t.expires_at)"
        " FROM refresh_families f LEFT JOIN refresh_tokens t ON t.family_id = f.id"
        " WHERE f.user_id = %s GROUP BY f.id ORDER BY f.created_at, f.id", (user_id,))
    return [SessionOut(id=r[0], created_at=r[1], revoked_at=r[2], last_refreshed_at=r[3],
                       expires_at=r[4]) for r in cur.fetchall()]


def audit_entries(cur, user_id: str) -> list[AuditEntryOut]:
    """Entries about the account (what it did to others is about them, and left out)."""
    cur.execute("SELECT at, action, host(ip), details FROM audit_log WHERE subject_id = %s"
                " ORDER BY at, id", (user_id,))
    return [AuditEntryOut(happened_at=r[0], action=r[1], ip=r[2], details=r[3])
            for r in cur.fetchall()]


def two_factor(cur, user_id: str) -> tuple[bool, int]:
    """``(TOTP on, recovery codes left)``."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM user_totp WHERE user_id = %(u)s"
                " AND confirmed_at IS NOT NULL), (SELECT count(*) FROM recovery_codes"
                " WHERE user_id = %(u)s AND used_at IS NULL)", {"u": user_id})
    on, left = cur.fetchone()
    return on, left


def erase(cur, user_id: str) -> tuple[int, bool]:
    """Delete the account; ``(orders kept without personal data, whether it existed)``.

    The orders lose their address here and their user when the row goes (ON
    DELETE SET NULL); the audit entries about the account keep what happened
    and when, but no longer where from. Everything else hanging off the user
    (sessions, tokens, mails, two-factor, idempotency keys) cascades.
    """
    # The account's row first: an order being placed holds a key-share lock
    # on it (the foreign key) until it commits, so this waits for that order,
    # and the redaction below, a statement of its own, then sees it. Without
    # the lock, an order committed meanwhile would keep its address.
    cur.execute("SELECT FROM users WHERE id = %s FOR UPDATE", (user_id,))
    cur.execute("UPDATE orders SET shipping_address = %s WHERE user_id = %s",
                (msgspec.json.encode(REDACTED_ADDRESS).decode(), user_id))
    orders = cur.rowcount
    cur.execute("UPDATE audit_log SET ip = NULL WHERE subject_id = %(u)s OR actor_id = %(u)s",
                {"u": user_id})
    cur.execute("DELETE FROM users WHERE id = %s", (user_id,))
    return orders, cur.rowcount == 1
