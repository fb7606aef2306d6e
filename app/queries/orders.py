"""Orders, their lines, stock movements and idempotency records."""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg2.errors

from app.schemas.orders import Address, OrderItemOut, OrderOut

_encode = msgspec.json.encode


class UnknownUser(Exception):
    """The ordering user does not exist (any more): a token outlived its account."""

_ORDER = ("o.id::text, o.user_id::text, o.status, o.total::text, o.currency,"
          " o.shipping_address::text, o.created_at")


def claim_idempotency_key(cur, user_id: str, key: str, request_hash: bytes) -> bool:
    """Reserve ``key`` for this transaction; False if another request owns it.

    A concurrent request with the same key blocks here until the first one
    commits (then this returns False) or rolls back (then this wins).
    """
    try:
        cur.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, response_status,"
            " response_body) VALUES (%s, %s, %s, 0, '') ON CONFLICT DO NOTHING RETURNING 1",
            (user_id, key, request_hash),
        )
    except psycopg2.errors.ForeignKeyViolation:
        raise UnknownUser(user_id) from None
    return cur.fetchone() is not None


def stored_response(cur, user_id: str, key: str) -> tuple[bytes, int, bytes] | None:
    """``(request_hash, status, body)`` recorded for ``key``."""
    cur.execute(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys"
        " WHERE user_id = %s AND key = %s",
        (user_id, key),
    )
    row = cur.fetchone()
    return (bytes(row[0]), row[1], bytes(row[2])) if row else None


def record_response(cur, user_id: str, key: str, status: int, body: bytes) -> None:
    cur.execute(
        "UPDATE idempotency_keys SET response_status = %s, response_body = %s"
        " WHERE user_id = %s AND key = %s",
        (status, body, user_id, key),
    )


def take_stock(cur, product_id: str, quantity: int) -> tuple[str, str] | None:
    """Atomically take ``quantity`` units: ``(unit_price, currency)`` or None.

    The WHERE clause is the guard: the row lock serializes concurrent orders
    and ``stock >= quantity`` is re-checked after waiting, so stock can never
    go below zero (the CHECK constraint backs this up).
    """
    cur.execute(
        "UPDATE products SET stock = stock - %s"
        " WHERE id = %s AND deleted_at IS NULL AND stock >= %s"
        " RETURNING price::text, currency",
        (quantity, product_id, quantity),
    )
    return cur.fetchone()


def existing_products(cur, product_ids: list[str]) -> set[str]:
    cur.execute("SELECT id::text FROM products WHERE id = ANY(%s::uuid[]) AND deleted_at IS NULL",
                (product_ids,))
    return {row[0] for row in cur.fetchall()}


def return_stock(cur, product_id: str, quantity: int) -> None:
    cur.execute("UPDATE products SET stock = stock + %s WHERE id = %s", (quantity, product_id))


def insert_order(cur, user_id: str, total: str, currency: str, address: Address,
                 lines: list[tuple[str, int, str]]) -> tuple[str, datetime]:
    try:
        cur.execute(
            "INSERT INTO orders (user_id, total, currency, shipping_address)"
            " VALUES (%s, %s, %s, %s) RETURNING id::text, created_at",
            (user_id, total, currency, _encode(address).decode()),
        )
    except psycopg2.errors.ForeignKeyViolation:
        raise UnknownUser(user_id) from None
    order_id, created_at = cur.fetchone()
    cur.execute(
        "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price)"
        " SELECT %s, line - 1, product_id, quantity, unit_price"
        " FROM unnest(%s::uuid[], %s::int[], %s::numeric[]) WITH ORDINALITY"
        " AS l(product_id, quantity, unit_price, line)",
        (order_id, [p for p, _, _ in lines], [q for _, q, _ in lines],
         [price for _, _, price in lines]),
    )
    return order_id, created_at


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
