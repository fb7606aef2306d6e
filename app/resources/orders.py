"""/v1/orders."""

from __future__ import annotations

import falcon

from app.media import read_json, read_query, write_json
from app.operations import USER, operation
from app.schemas.orders import OrderIn, OrderOut, OrderPage, OrderQuery


class OrdersResource:
    __slots__ = ("_orders",)

    def __init__(self, deps):
        self._orders = deps.orders

    @operation(access=USER, summary="Place an order (optional Idempotency-Key header)",
               body=OrderIn, response=OrderOut, status=201, errors=(409,), tag="orders")
    def on_post(self, req, resp):
        body = read_json(req, OrderIn)
        status, response = self._orders.place(req.context.user, body,
                                               req.get_header("Idempotency-Key"))
        resp.status = falcon.code_to_http_status(status)
        resp.data = response
        resp.content_type = falcon.MEDIA_JSON

    @operation(access=USER, summary="Orders, newest first (admins: all, or ?user_id=)",
               query=OrderQuery, response=OrderPage, errors=(404,), tag="orders")
    def on_get(self, req, resp):
        query = read_query(req, OrderQuery)
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
