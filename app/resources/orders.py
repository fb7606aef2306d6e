"""/v1/orders."""

from __future__ import annotations

import falcon
import msgspec

from app.media import write_json
from app.operations import USER, operation
from app.schemas.orders import OrderIn, OrderOut, OrderPage, OrderQuery


class _Placed(msgspec.Struct):
    id: str


# Reads only the id of an order's encoded answer (msgspec skips the rest).
_placed_id = msgspec.json.Decoder(_Placed).decode


class OrdersResource:
    __slots__ = ("_orders",)

    def __init__(self, deps):
        self._orders = deps.orders

    @operation(access=USER, summary="Place an order (optional Idempotency-Key header)",
               body=OrderIn, response=OrderOut, status=201, errors=(409,), tag="orders")
    def on_post(self, req, resp, body: OrderIn):
        # The service decides the status: a replayed Idempotency-Key answers
        # with the status of the order it first placed.
        status, response = self._orders.place(req.context.user, body,
                                              req.get_header("Idempotency-Key"))
        resp.status = falcon.code_to_http_status(status)
        resp.data = response
        resp.content_type = falcon.MEDIA_JSON
        if status == 201:
            # RFC 9110 §15.3.2: a 201 names what it created; a replay of that
            # 201 is the same answer, Location included.
            resp.location = f"/v1/orders/{_placed_id(response).id}"

    @operation(access=USER, summary="Orders, newest first (admins: all, or ?user_id=)",
               query=OrderQuery, response=OrderPage, errors=(404,), tag="orders")
    def on_get(self, req, resp, query: OrderQuery):
        write_json(resp, self._orders.list(req.context.user, query.user_id, query.limit,
                                           query.cursor))


class OrderResource:
    __slots__ = ("_orders",)

    def __init__(self, deps):
        self._orders = deps.orders

    @operation(access=USER, summary="An order (owner or admin)", response=OrderOut,
               errors=(404,), tag="orders")
    def on_get(self, req, resp, order_id):
        write_json(resp, self._orders.get(req.context.user, order_id))


class OrderCancelResource:
    __slots__ = ("_orders",)

    def __init__(self, deps):
        self._orders = deps.orders

    @operation(access=USER, summary="Cancel a placed order; its stock is restored",
               response=OrderOut, errors=(404, 409), tag="orders")
    def on_post(self, req, resp, order_id):
        write_json(resp, self._orders.cancel(req.context.user, order_id))
