"""Placing, reading and cancelling orders.

Correctness under any concurrency comes from Postgres, never from the cache:

* each line takes stock with one conditional UPDATE (``stock >= qty``), so
  stock never goes below zero and no order is oversold;
* lines are locked in product-id order, so two orders for the same products
  cannot deadlock by locking them in opposite orders; should Postgres still
  report a deadlock or serialization failure, the whole transaction is
  retried;
* the order, its lines, the stock moves, its event (the webhook outbox) and
  the Idempotency-Key record commit in one transaction: nothing is
  half-written.

A placement is one call of the ``place_order()`` SQL function
(app/migrations/0010_place_order.sql, as 0013 redefines it), which does all of the above.
"""

from __future__ import annotations

import hashlib
import logging
import random
from datetime import datetime

import gevent
import psycopg2.errors

from app.errors import (
    AccountGone,
    BadRequest,
    Conflict,
    NotFound,
    OutOfStock,
    Unavailable,
    ValidationFailed,
)
from app.ids import is_uuid
from app.media import encoder
from app.pagination import UUIDText, decode_cursor, page
from app.queries import events as outbox
from app.queries import orders as q
from app.queries import users
from app.schemas.orders import OrderIn, OrderOut, OrderPage
from app.tokens import Principal

log = logging.getLogger(__name__)

RETRIES = 3
_RETRYABLE = (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)
_KEY_MAX = 255


class _Replay(Exception):
    """Another request already used this Idempotency-Key."""


class Orders:
    def __init__(self, pool, catalog, metrics):
        self._pool = pool
        self._catalog = catalog
        self._metrics = metrics

    def place(self, principal: Principal, body: OrderIn,
              idempotency_key: str | None) -> tuple[int, bytes]:
        """Place an order; return ``(status, response body)`` (a replay may differ)."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= _KEY_MAX:
            raise BadRequest(f"Idempotency-Key must be 1 to {_KEY_MAX} characters")
        _reject_duplicate_lines(body)
        request_hash = hashlib.sha256(encoder.encode(body)).digest()
        for attempt in range(1, RETRIES + 1):
            try:
                status, response, product_ids = self._place_once(
                    principal, body, idempotency_key, request_hash)
                break
            except q.UnknownUser:
                raise AccountGone() from None
            except _Replay:
                status, response = self._replay(principal, idempotency_key, request_hash)
                # The first request may still be invalidating what it changed:
                # this answer, too, comes after a round begun after its commit.
                self._catalog.invalidate_products(
                    [line.product_id for line in body.items], lists=True)
                return status, response
            except _RETRYABLE as ex:
                if attempt == RETRIES:
                    raise _contention() from ex
                self._metrics.incr("orders.retry")
                gevent.sleep(random.uniform(0.005, 0.05) * attempt)
        # After commit: product pages and lists (they show stock) must show the new stock.
        self._catalog.invalidate_products(product_ids, lists=True)
        self._metrics.incr("orders.placed")
        return status, response

    def _place_once(self, principal, body, idempotency_key, request_hash):
        lines = [(line.product_id, line.quantity) for line in body.items]
        with self._pool.connection() as conn, conn.cursor() as cur:
            try:
                response = q.place(cur, principal.id, idempotency_key, request_hash, lines,
                                   body.shipping_address)
            except q.UnknownProducts as ex:
                raise ValidationFailed("some products do not exist", details=[
                    {"field": "$.items", "message": f"unknown product {product_id}"}
                    for product_id in ex.product_ids]) from None
            except q.OutOfStock as ex:
                self._metrics.incr("orders.out_of_stock")
                raise OutOfStock("not enough stock for: " + ", ".join(ex.product_ids), details=[
                    {"field": "$.items", "message": f"out of stock: {product_id}"}
                    for product_id in ex.product_ids]) from None
            except q.MixedCurrencies:
                raise ValidationFailed("all products in an order must share one currency",
                                       details=[{"field": "$.items",
                                                 "message": "mixed currencies"}]) from None
            except q.TotalTooLarge:
                raise ValidationFailed(
                    f"the order total would exceed {q.MAX_TOTAL}, the most one order can"
                    " hold: split it into several orders",
                    details=[{"field": "$.items", "message": "total too large"}]) from None
        if response is None:
            raise _Replay()
        return 201, response, [product_id for product_id, _ in lines]

    def _replay(self, principal, idempotency_key, request_hash) -> tuple[int, bytes]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            stored = q.stored_response(cur, principal.id, idempotency_key)
        if stored is None:  # the first request rolled back meanwhile: ask for a retry
            raise Conflict("a request with this Idempotency-Key is in progress; retry")
        stored_hash, status, response = stored
        if stored_hash != request_hash:
            raise ValidationFailed(
                "this Idempotency-Key was used with a different request body",
                details=[{"field": "Idempotency-Key", "message": "reused with another body"}])
        self._metrics.incr("orders.idempotent_replay")
        return status, response

    def get(self, principal: Principal, order_id: str) -> OrderOut:
        if not is_uuid(order_id):
            raise NotFound("no such order")
        owner = None if principal.is_admin else principal.id
        with self._pool.connection() as conn, conn.cursor() as cur:
            order = q.order(cur, order_id, owner)
        if order is None:
            raise NotFound("no such order")
        return order

    def list(self, principal: Principal, user_id: str | None, limit: int,
             cursor: str | None) -> OrderPage:
        if not principal.is_admin:
            if user_id is not None and user_id != principal.id:
                raise NotFound("no such user")
            user_id = principal.id
        before = decode_cursor(cursor, tuple[datetime, UUIDText]) if cursor else None
        with self._pool.connection() as conn, conn.cursor() as cur:
            # A deleted account's orders lose their owner, so its still-valid
            # access token would list nothing with a 200: say it is gone instead
            # (admins are checked by AccessControl; get and cancel answer 404).
            if not principal.is_admin and users.role_of(cur, principal.id) is None:
                raise AccountGone()
            rows = q.page(cur, user_id, limit, before)
        items, next_cursor = page(rows, limit, lambda o: (o.created_at.isoformat(), o.id))
        return OrderPage(items=items, next_cursor=next_cursor)

    def cancel(self, principal: Principal, order_id: str) -> OrderOut:
        if not is_uuid(order_id):
            raise NotFound("no such order")
        for attempt in range(1, RETRIES + 1):
            try:
                order, product_ids = self._cancel_once(principal, order_id)
                break
            except _RETRYABLE as ex:
                if attempt == RETRIES:
                    raise _contention() from ex
                gevent.sleep(random.uniform(0.005, 0.05) * attempt)
        self._catalog.invalidate_products(product_ids, lists=True)
        return order

    def _cancel_once(self, principal, order_id):
        with self._pool.transaction() as conn, conn.cursor() as cur:
            found = q.owner_and_status(cur, order_id, lock=True)
            if found is None or (not principal.is_admin and found[0] != principal.id):
                raise NotFound("no such order")
            if not q.cancel(cur, order_id):
                raise Conflict(f"only placed orders can be cancelled (this one is {found[1]})")
            lines = sorted(q.lines(cur, order_id))
            for product_id, quantity in lines:
                q.return_stock(cur, product_id, quantity)
            order = q.order(cur, order_id, None)
            outbox.record(cur, outbox.ORDER_CANCELLED, order_id, encoder.encode(order))
        return order, [product_id for product_id, _ in lines]


def _contention() -> Unavailable:
    """Every retry hit a deadlock or serialization failure: ask the client to retry."""
    return Unavailable("the order could not be completed under contention; retry",
                       retry_after=1)


def _reject_duplicate_lines(body: OrderIn) -> None:
    seen = set()
    for index, line in enumerate(body.items):
        if line.product_id in seen:
            raise ValidationFailed("each product may appear once per order", details=[
                {"field": f"$.items[{index}].product_id", "message": "duplicate product"}])
        seen.add(line.product_id)
