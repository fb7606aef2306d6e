"""Webhook subscriptions and their deliveries: the admin API's and the worker's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.queries.events import CHANNEL
from app.schemas.webhooks import DeliveryOut, DeliveryStats, WebhookOut

_SUBSCRIPTION = ("s.id::text, s.url, s.events, s.description, s.enabled, s.disabled_reason,"
                 " s.created_at, s.updated_at")
_DELIVERY = ("d.id::text, d.event_id::text, e.type, d.status, d.attempts,"
             " CASE WHEN d.status IN ('succeeded', 'dead') THEN NULL ELSE d.next_attempt_at END,"
             " d.last_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at")


def _subscription(row) -> WebhookOut:
    return WebhookOut(id=row[0], url=row[1], events=list(row[2]), description=row[3],
                      enabled=row[4], disabled_reason=row[5], created_at=row[6],
                      updated_at=row[7])


def _delivery(row) -> DeliveryOut:
    return DeliveryOut(id=row[0], event_id=row[1], event_type=row[2], status=row[3],
                       attempts=row[4], next_attempt_at=row[5], last_attempt_at=row[6],
                       last_status=row[7], last_error=row[8], delivered_at=row[9],
                       created_at=row[10])


# -- subscriptions -------------------------------------------------------------

def insert_subscription(cur, url: str, events: list[str], description: str | None,
                        secret: str) -> WebhookOut:
    cur.execute(
        "INSERT INTO webhook_subscriptions AS s (url, events, description, secret)"
        f" VALUES (%s, %s, %s, %s) RETURNING {_SUBSCRIPTION}",
        (url, events, description, secret))
    return _subscription(cur.fetchone())


def subscription(cur, subscription_id: str) -> WebhookOut | None:
    cur.execute(f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions s WHERE s.id = %s",
                (subscription_id,))
    row = cur.fetchone()
    return _subscription(row) if row else None


def subscription_page(cur, limit: int, before: tuple[datetime, str] | None) -> list[WebhookOut]:
    """Subscriptions newest first, ``limit + 1`` rows."""
    where, values = "", []
    if before is not None:
        where, values = " WHERE (s.created_at, s.id) < (%s, %s)", list(before)
    cur.execute(f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions s{where}"
                " ORDER BY s.created_at DESC, s.id DESC LIMIT %s", (*values, limit + 1))
    return [_subscription(row) for row in cur.fetchall()]


def update_subscription(cur, subscription_id: str, changes: dict) -> WebhookOut | None:
    """Apply ``changes`` (url, events, enabled); enabling clears the disabled reason."""
    assignments, values = ["updated_at = now()"], []
    for column in ("url", "events", "enabled"):
        if column in changes:
            assignments.append(f"{column} = %s")
            values.append(changes[column])
    if changes.get("enabled") is True:
        assignments.append("disabled_reason = NULL")
    cur.execute(f"UPDATE webhook_subscriptions s SET {', '.join(assignments)}"
                f" WHERE s.id = %s RETURNING {_SUBSCRIPTION}", (*values, subscription_id))
    row = cur.fetchone()
    return _subscription(row) if row else None


def delete_subscription(cur, subscription_id: str) -> bool:
    cur.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (subscription_id,))
    return cur.rowcount == 1


def rotate_secret(cur, subscription_id: str, secret: str, overlap: timedelta) -> datetime | None:
    """Make ``secret`` current; the current one keeps signing for ``overlap``.

    A second rotation within the overlap retires the oldest secret at once:
    at most two secrets sign.
    """
    cur.execute(
        "UPDATE webhook_subscriptions SET previous_secret = secret, secret = %s,"
        " previous_expires_at = now() + %s, updated_at = now()"
        " WHERE id = %s RETURNING previous_expires_at",
        (secret, overlap, subscription_id))
    row = cur.fetchone()
    return row[0] if row else None


def disable(cur, subscription_id: str, reason: str) -> None:
    cur.execute("UPDATE webhook_subscriptions SET enabled = false, disabled_reason = %s,"
                " updated_at = now() WHERE id = %s", (reason, subscription_id))


# -- deliveries (admin) --------------------------------------------------------

def delivery_stats(cur, subscription_id: str) -> DeliveryStats:
    cur.execute("SELECT status, count(*) FROM webhook_deliveries WHERE subscription_id = %s"
                " GROUP BY status", (subscription_id,))
    return DeliveryStats(**dict(cur.fetchall()))


def delivery_page(cur, subscription_id: str, status: str | None, limit: int,
                  before: tuple[datetime, str] | None) -> list[DeliveryOut]:
    """A subscription's deliveries newest first, ``limit + 1`` rows."""
    where = ["d.subscription_id = %s"]
    values: list[object] = [subscription_id]
    if status is not None:
        where.append("d.status = %s")
        values.append(status)
    if before is not None:
        where.append("(d.created_at, d.id) < (%s, %s)")
        values += list(before)
    cur.execute(f"SELECT {_DELIVERY} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
                f" WHERE {' AND '.join(where)} ORDER BY d.created_at DESC, d.id DESC LIMIT %s",
                (*values, limit + 1))
    return [_delivery(row) for row in cur.fetchall()]


def delivery(cur, subscription_id: str, delivery_id: str, *, lock: bool = False):
    cur.execute(f"SELECT {_DELIVERY} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
                " WHERE d.subscription_id = %s AND d.id = %s"
                + (" FOR UPDATE OF d" if lock else ""), (subscription_id, delivery_id))
    row = cur.fetchone()
    return _delivery(row) if row else None


def requeue(cur, delivery_id: str) -> None:
    """Make a failed or dead delivery due now, with a fresh retry period."""
    cur.execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),"
                " retry_from = now(), lease_until = NULL WHERE id = %s", (delivery_id,))
    cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


# -- deliveries (worker) -------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """A claimed delivery: everything one attempt needs, read with the claim."""

    delivery_id: str
    attempts: int  # including this one; also the claim's token
    event_id: str
    event_type: str
    event_created_at: datetime
    data: str
    subscription_id: str
    url: str
    secrets: list[str]


# Claim due rows (never tried, failed and due again, or leased by a worker
# whose lease ran out: it died or lost its connection) of enabled
# subscriptions. SKIP LOCKED lets concurrent workers pass over each other's
# rows; the lease is the claim once this autocommit statement has committed.
_CLAIM = """
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
    WHERE d.status IN ('pending', 'delivering', 'failed') AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET status = 'delivering', attempts = d.attempts + 1, last_attempt_at = now(),
    lease_until = now() + %(lease)s, next_attempt_at = now() + %(lease)s
FROM due, events e, webhook_subscriptions s
WHERE d.id = due.id AND e.id = d.event_id AND s.id = d.subscription_id
RETURNING d.id::text, d.attempts, e.id::text, e.type, e.created_at, e.data::text,
          s.id::text, s.url,
          CASE WHEN s.previous_secret IS NOT NULL AND s.previous_expires_at > now()
               THEN ARRAY[s.secret, s.previous_secret] ELSE ARRAY[s.secret] END
"""


def claim(cur, limit: int, lease: timedelta) -> list[Job]:
    cur.execute(_CLAIM, {"limit": limit, "lease": lease})
    # row[:8] is the eight fields before secrets; mypy cannot count a slice.
    return [Job(*row[:8], secrets=list(row[8]))  # type: ignore[misc]
            for row in cur.fetchall()]


def finish(cur, job: Job, *, succeeded: bool, dead: bool, delay: timedelta,
           retry_for: timedelta, status: int | None, error: str | None) -> str | None:
    """Record the attempt's outcome; the delivery's new status, or None if the claim was lost.

    A failure becomes ``dead`` once the retry period has run out (so the last
    attempt is made after the whole period, not before it). The claim
    is lost when the lease ran out and another worker claimed the row
    (``attempts`` moved on): then that worker's outcome counts, not this one.
    """
    cur.execute(
        "UPDATE webhook_deliveries SET"
        " status = CASE WHEN %(succeeded)s THEN 'succeeded' WHEN %(dead)s THEN 'dead'"
        "   WHEN now() - retry_from >= %(retry_for)s THEN 'dead' ELSE 'failed' END,"
        " next_attempt_at = now() + %(delay)s, lease_until = NULL,"
        " last_status = %(status)s, last_error = %(error)s,"
        " delivered_at = CASE WHEN %(succeeded)s THEN now() END"
        " WHERE id = %(id)s AND attempts = %(attempts)s AND status = 'delivering'"
        " RETURNING status",
        {"succeeded": succeeded, "dead": dead, "delay": delay, "retry_for": retry_for,
         "status": status, "error": error, "id": job.delivery_id, "attempts": job.attempts})
    row = cur.fetchone()
    return row[0] if row else None


def queue_gauges(cur) -> tuple[int, float, int]:
    """``(deliveries waiting, age in seconds of the oldest, dead letters)``."""
    cur.execute(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
        " FROM webhook_deliveries WHERE status IN ('pending', 'delivering', 'failed')")
    depth, oldest = cur.fetchone()
    cur.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'")
    return depth, float(oldest), cur.fetchone()[0]
