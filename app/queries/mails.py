"""The mails table: the outbox of mail, claimed and finished like webhook deliveries.

A mail is queued with :func:`enqueue` inside the transaction of whatever it
announces (the token it carries), so a rolled-back request sends nothing.
The delivery worker claims due rows with a lease in one autocommit
statement, talks SMTP outside any transaction, then records the outcome
under the claim that made it (``attempts`` is the claim's token).
"""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

import msgspec

_encode = msgspec.json.encode

#: A mail still failing after this many attempts is dead.
MAX_ATTEMPTS = 10


class MailJob(NamedTuple):
    id: str
    recipient: str
    template: str
    params: dict
    attempts: int


def enqueue(cur, user_id: str | None, recipient: str, template: str, params: dict) -> str:
    cur.execute("INSERT INTO mails (user_id, recipient, template, params)"
                " VALUES (%s, %s, %s, %s) RETURNING id::text",
                (user_id, recipient, template, _encode(params).decode()))
    return cur.fetchone()[0]


_CLAIM = """
UPDATE mails m SET status = 'sending', attempts = m.attempts + 1,
       lease_until = now() + %(lease)s, next_attempt_at = now() + %(lease)s
FROM (SELECT id FROM mails
      WHERE status IN ('pending', 'sending', 'failed') AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due
WHERE m.id = due.id
RETURNING m.id::text, m.recipient, m.template, m.params, m.attempts
"""


def claim(cur, limit: int, lease: timedelta) -> list[MailJob]:
    cur.execute(_CLAIM, {"limit": limit, "lease": lease})
    return [MailJob(*row) for row in cur.fetchall()]


def finish(cur, job: MailJob, *, sent: bool, dead: bool, delay: timedelta,
           error: str | None) -> str | None:
    """Record an attempt; the mail's new status, or None if the claim was lost.

    A sent or dead mail keeps no params: the link token it carried is gone.
    """
    cur.execute(
        "UPDATE mails SET"
        " status = CASE WHEN %(sent)s THEN 'sent' WHEN %(dead)s OR attempts >= %(max)s"
        "   THEN 'dead' ELSE 'failed' END,"
        " next_attempt_at = now() + %(delay)s, lease_until = NULL, last_error = %(error)s,"
        " sent_at = CASE WHEN %(sent)s THEN now() END,"
        " params = CASE WHEN %(sent)s OR %(dead)s OR attempts >= %(max)s THEN '{}'::jsonb"
        "   ELSE params END"
        " WHERE id = %(id)s AND attempts = %(attempts)s AND status = 'sending'"
        " RETURNING status",
        {"sent": sent, "dead": dead, "max": MAX_ATTEMPTS, "delay": delay, "error": error,
         "id": job.id, "attempts": job.attempts})
    row = cur.fetchone()
    return row[0] if row else None


def queue_gauges(cur) -> tuple[int, int]:
    """``(mails waiting, dead mails)``."""
    cur.execute("SELECT count(*) FILTER (WHERE status IN ('pending', 'sending', 'failed')),"
                " count(*) FILTER (WHERE status = 'dead') FROM mails")
    waiting, dead = cur.fetchone()
    return waiting, dead


def prune(cur, age: timedelta) -> int:
    """Delete sent and dead mails older than ``age`` (they hold no link any more)."""
    cur.execute("DELETE FROM mails WHERE status IN ('sent', 'dead') AND created_at < now() - %s",
                (age,))
    return cur.rowcount
