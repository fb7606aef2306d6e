"""The outbox: event rows written in the transaction of the change they record.

Deliveries fan out here, in that same statement, rather than later by the
delivery worker reading the events table. A worker scanning ``events`` would
need a high-water mark, and neither ids nor ``created_at`` follow commit
order (a transaction that started first can commit last), so a mark can skip
an event for good; rows fanned out at commit are each their own queue item
and cannot be skipped. It also fixes who gets an event: the subscriptions
enabled and listening for its type when the change committed.
"""

from __future__ import annotations

from datetime import timedelta

#: The channel the delivery worker LISTENs on (record_event in
#: app/migrations/0005_events.sql NOTIFYs it). NOTIFY only wakes the worker: a
#: lost notification delays a delivery until the next poll, it never loses one.
CHANNEL = "peregrine_webhooks"
#: Each database session NOTIFYs CHANNEL at most once per this many seconds,
#: and not while another transaction is about to
#: (app/migrations/0009_coalesced_webhook_notify.sql): the lock a NOTIFY takes
#: at commit is cluster-wide. A worker claims again this long after every
#: notification it hears, which finds the events whose NOTIFY was skipped.
NOTIFY_WINDOW = 0.1

ORDER_PLACED = "order.placed"
ORDER_CANCELLED = "order.cancelled"
PRODUCT_UPDATED = "product.updated"
TYPES = (ORDER_PLACED, ORDER_CANCELLED, PRODUCT_UPDATED)
#: ``prune`` keeps finished deliveries (and their events) this long.
KEEP_DAYS = 7

# One round trip, in a function whose plans Postgres keeps for the session:
# the event, its deliveries, and a NOTIFY on CHANNEL only when there is
# someone to deliver to, the session sent none within NOTIFY_WINDOW and no
# other transaction is about to (app/migrations/0005_events.sql and
# 0009_coalesced_webhook_notify.sql).
_RECORD = "SELECT record_event(%s, %s, %s)::text"


def record(cur, event_type: str, aggregate_id: str, data: bytes | str) -> str:
    """Write an event (``data``: JSON, the resource as the API returns it); its id.

    Call it inside the transaction of the change: it commits or rolls back
    with it.
    """
    if isinstance(data, bytes):
        data = data.decode()
    cur.execute(_RECORD, (event_type, aggregate_id, data))
    return cur.fetchone()[0]


def prune(cur, age: timedelta) -> tuple[int, int]:
    """Delete finished deliveries and events older than ``age``: ``(deliveries, events)``.

    An event goes once it has no delivery left that could still be sent.
    """
    cur.execute("DELETE FROM webhook_deliveries WHERE status IN ('succeeded', 'dead')"
                " AND created_at < now() - %s", (age,))
    deliveries = cur.rowcount
    cur.execute("DELETE FROM events e WHERE e.created_at < now() - %s AND NOT EXISTS"
                " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)", (age,))
    return deliveries, cur.rowcount
