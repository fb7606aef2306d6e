"""Orders, their lines, stock movements and idempotency records."""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec
import psycopg2.errors

from app.schemas.orders import Address, OrderItemOut, OrderOut

log = logging.getLogger(__name__)

_encode = msgspec.json.encode


class UnknownUser(Exception):
    """The ordering user does not exist (any more): a token outlived its account."""


class Refused(Exception):
    """The order cannot be placed as asked; nothing was written."""

    def __init__(self, product_ids: list[str]):
        super().__init__(", ".join(product_ids))
        self.product_ids = product_ids


class OutOfStock(Refused):
    """These products (in lock order) have less stock than the order asks for."""


class UnknownProducts(Refused):
    """These products do not exist, or were deleted."""


class MixedCurrencies(Refused):
    """The products are priced in more than one currency."""


class TotalTooLarge(Refused):
    """The order's total is beyond what ``orders.total`` (numeric(14, 2)) holds."""


# The largest total an order can hold: numeric(14, 2) (app/migrations/0001_initial.sql).
MAX_TOTAL = "999999999999.99"


# The SQLSTATEs place_order() raises on purpose (app/migrations/0010_place_order.sql,
# redefined by 0013 with the same codes).
_REFUSALS = {"PO409": OutOfStock, "PO422": UnknownProducts, "PO423": MixedCurrencies}

_ORDER = ("o.id::text, o.user_id::text, o.status, o.total::text, o.currency,"
          " o.shipping_address::text, o.created_at")

# PERF: one round trip (and one hub switch) per order instead of eight: the
# function takes the stock, writes the order, its lines, its event and the
# Idempotency-Key record in one statement (an autocommit transaction).
# 2.22M -> 1.67M instructions per order in-process, worker CPU per order -28 %
# in bench.compare (bench/README.md, "Orders: one-statement placement").
_PLACE = "SELECT place_order(%s, %s, %s, %s::text[], %s::integer[], %s)"


def place(cur, user_id: str, idempotency_key: str | None, request_hash: bytes,
          lines: list[tuple[str, int]], address: Address) -> bytes | None:
    """Place an order in one statement; its response body, or None if the key is taken.

    Call it outside any transaction (autocommit): the statement is the
    transaction. Raises :class:`Refused` (nothing written) or
    :class:`UnknownUser`; deadlocks and serialization failures pass through
    for the caller to retry.
    """
    try:
        cur.execute(_PLACE, (user_id, idempotency_key, request_hash,
                             [product_id for product_id, _ in lines],
                             [quantity for _, quantity in lines],
                             _encode(address).decode()))
    except psycopg2.errors.ForeignKeyViolation:
        raise UnknownUser(user_id) from None
    except psycopg2.errors.UniqueViolation as ex:
        if ex.diag.constraint_name != "idempotency_keys_pkey":
            raise
        # Stored meanwhile by a writer outside the key's lock: nothing of this
        # order was kept, and what is stored is the answer. Nothing in this
        # service writes a record outside that lock, so say it happened.
        log.warning("an Idempotency-Key record appeared outside its lock; replaying it",
                    extra={"user_id": user_id})
        return None
    except psycopg2.errors.NumericValueOutOfRange:
        # Every price fits numeric(12, 2), but 50 lines of 100 may not sum
        # into the total's numeric(14, 2): the statement wrote nothing.
        raise TotalTooLarge([product_id for product_id, _ in lines]) from None
    except psycopg2.Error as ex:
        refusal = _REFUSALS.get(ex.pgcode or "")
        if refusal is None:
            raise
        detail = ex.diag.message_detail or ""
        raise refusal(detail.split(",") if detail else []) from None
    response = cur.fetchone()[0]
    return None if response is None else response.encode()


def stored_response(cur, user_id: str, key: str) -> tuple[bytes, int, bytes] | None:
    """``(request_hash, status, body)`` recorded for ``key``."""
    cur.execute(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys"
        " WHERE user_id = %s AND key = %s",
        (user_id, key),
    )
    row = cur.fetchone()
    return (bytes(row[0]), row[1], bytes(row[2])) if row else None


def return_stock(cur, product_id: str, quantity: int) -> None:
    cur.execute("UPDATE products SET stock = stock + %s WHERE id = %s", (quantity, product_id))


def cancel(cur, order_id: str) -> bool:
    cur.execute(
        "UPDATE orders SET status = 'cancelled', cancelled_at = now()"
        " WHERE id = %s AND status = 'placed'",
        (order_id,),
    )
    return cur.rowcount == 1


def owner_and_status(cur, order_id: str, *, lock: bool = False) -> tuple[str, str] | None:
    cur.execute("SELECT user_id::text, status FROM orders WHERE id = %s"
                + (" FOR UPDATE" if lock else ""), (order_id,))
    return cur.fetchone()


def lines(cur, order_id: str) -> list[tuple[str, int]]:
    cur.execute("SELECT product_id::text, quantity FROM order_items WHERE order_id = %s",
                (order_id,))
    return cur.fetchall()


def _orders(cur, rows) -> list[OrderOut]:
    if not rows:
        return []
    cur.execute(
        "SELECT order_id::text, product_id::text, quantity, unit_price::text FROM order_items"
        " WHERE order_id = ANY(%s::uuid[]) ORDER BY order_id, line",
        ([row[0] for row in rows],),
    )
    items: dict[str, list[OrderItemOut]] = {}
    for order_id, product_id, quantity, unit_price in cur.fetchall():
        items.setdefault(order_id, []).append(
            OrderItemOut(product_id=product_id, quantity=quantity, unit_price=unit_price))
    return [
        OrderOut(id=r[0], user_id=r[1], status=r[2], total=r[3], currency=r[4],
                 shipping_address=msgspec.json.decode(r[5], type=Address),
                 created_at=r[6], items=items.get(r[0], []))
        for r in rows
    ]


def order(cur, order_id: str, owner_id: str | None) -> OrderOut | None:
    """An order by id; with ``owner_id`` only if it belongs to that user."""
    if owner_id is None:
        cur.execute(f"SELECT {_ORDER} FROM orders o WHERE o.id = %s", (order_id,))
    else:
        cur.execute(f"SELECT {_ORDER} FROM orders o WHERE o.id = %s AND o.user_id = %s",
                    (order_id, owner_id))
    found = _orders(cur, cur.fetchall())
    return found[0] if found else None


def page(cur, user_id: str | None, limit: int, before: tuple[datetime, str] | None):
    """Orders newest first (all users when ``user_id`` is None), ``limit + 1`` rows."""
    where: list[str] = []
    values: list[object] = []
    if user_id is not None:
        where.append("o.user_id = %s")
        values.append(user_id)
    if before is not None:
        where.append("(o.created_at, o.id) < (%s, %s)")
        values += list(before)
    sql = (f"SELECT {_ORDER} FROM orders o"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + " ORDER BY o.created_at DESC, o.id DESC LIMIT %s")
    cur.execute(sql, (*values, limit + 1))
    return _orders(cur, cur.fetchall())
