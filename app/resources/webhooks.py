"""/v1/webhooks: subscriptions, their deliveries and manual retries (admins only)."""

from __future__ import annotations

from app.media import write_json
from app.operations import ADMIN, operation
from app.schemas.common import PageQuery
from app.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    DeliveryQuery,
    WebhookCreated,
    WebhookDetail,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
    WebhookSecret,
)
from app.webhooks.subscriptions import Webhooks

TAG = "webhooks"


def _service(deps) -> Webhooks:
    return Webhooks(deps.pool, deps.config.webhooks)


class WebhooksResource:
    __slots__ = ("_webhooks",)

    def __init__(self, deps):
        self._webhooks = _service(deps)

    @operation(access=ADMIN, summary="Webhook subscriptions, newest first", query=PageQuery,
               response=WebhookPage, tag=TAG)
    def on_get(self, req, resp, query: PageQuery):
        write_json(resp, self._webhooks.list(query.limit, query.cursor))

    @operation(access=ADMIN, summary="Subscribe a URL to events; the secret is shown only here",
               body=WebhookIn, response=WebhookCreated, status=201, errors=(422,), tag=TAG)
    def on_post(self, req, resp, body: WebhookIn):
        created = self._webhooks.create(body)
        write_json(resp, created)
        resp.location = f"/v1/webhooks/{created.id}"


class WebhookResource:
    __slots__ = ("_webhooks",)

    def __init__(self, deps):
        self._webhooks = _service(deps)

    @operation(access=ADMIN, summary="A subscription with delivery counts (never the secret)",
               response=WebhookDetail, errors=(404,), tag=TAG)
    def on_get(self, req, resp, webhook_id):
        write_json(resp, self._webhooks.get(webhook_id))

    @operation(access=ADMIN, summary="Change a subscription's URL, events or enabled flag",
               body=WebhookPatch, response=WebhookOut, errors=(404, 422), tag=TAG)
    def on_patch(self, req, resp, webhook_id, body: WebhookPatch):
        write_json(resp, self._webhooks.update(webhook_id, body))

    @operation(access=ADMIN, summary="Delete a subscription and its deliveries", status=204,
               errors=(404,), tag=TAG)
    def on_delete(self, req, resp, webhook_id):
        self._webhooks.delete(webhook_id)


class WebhookSecretResource:
    __slots__ = ("_webhooks",)

    def __init__(self, deps):
        self._webhooks = _service(deps)

    @operation(access=ADMIN, summary="A new signing secret; the previous one signs for 24 h",
               response=WebhookSecret, errors=(404,), tag=TAG)
    def on_post(self, req, resp, webhook_id):
        write_json(resp, self._webhooks.rotate_secret(webhook_id))


class WebhookDeliveriesResource:
    __slots__ = ("_webhooks",)

    def __init__(self, deps):
        self._webhooks = _service(deps)

    @operation(access=ADMIN, summary="A subscription's deliveries, newest first",
               query=DeliveryQuery, response=DeliveryPage, errors=(404,), tag=TAG)
    def on_get(self, req, resp, webhook_id, query: DeliveryQuery):
        write_json(resp, self._webhooks.deliveries(webhook_id, query.status, query.limit,
                                                   query.cursor))


class WebhookDeliveryRetryResource:
    __slots__ = ("_webhooks",)

    def __init__(self, deps):
        self._webhooks = _service(deps)

    @operation(access=ADMIN, summary="Requeue a failed or dead delivery now",
               response=DeliveryOut, status=202, errors=(404, 409), tag=TAG)
    def on_post(self, req, resp, webhook_id, delivery_id):
        write_json(resp, self._webhooks.retry(webhook_id, delivery_id))
