"""Webhook shapes: subscriptions, deliveries, and the event body that is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.schemas.common import DEFAULT_PAGE_LIMIT, Cursor, Input, PageLimit
from app.schemas.text import Text

EventType = Literal["order.placed", "order.cancelled", "product.updated"]
EventTypes = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=3)]
WebhookUrl = Text(min_length=1, max_length=2048, description="https URL the events go to")
WebhookDescription = Text(max_length=500)
DeliveryStatus = Literal["pending", "delivering", "failed", "succeeded", "dead"]


class WebhookIn(Input, kw_only=True):
    url: WebhookUrl
    events: EventTypes
    description: WebhookDescription | None = None


class WebhookPatch(Input, kw_only=True):
    """Fields left out stay as they are."""

    url: WebhookUrl | UnsetType = UNSET
    events: EventTypes | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class WebhookOut(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None  # set when the endpoint answered 410 Gone
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut, kw_only=True):
    """The new subscription with its signing secret: the only time it is shown."""

    secret: str


class DeliveryStats(msgspec.Struct, kw_only=True):
    pending: int = 0
    delivering: int = 0
    failed: int = 0
    succeeded: int = 0
    dead: int = 0


class WebhookDetail(WebhookOut, kw_only=True):
    stats: DeliveryStats


class WebhookPage(msgspec.Struct, kw_only=True):
    items: list[WebhookOut]
    next_cursor: str | None


class WebhookSecret(msgspec.Struct, kw_only=True):
    """A rotated secret; the previous one keeps signing until ``previous_expires_at``."""

    secret: str
    previous_expires_at: datetime


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None  # None once succeeded or dead
    last_attempt_at: datetime | None
    last_status: int | None  # the endpoint's HTTP status, if it answered
    last_error: str | None  # a short excerpt of the answer or the error
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(msgspec.Struct, kw_only=True):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveryQuery(Input, kw_only=True):
    status: DeliveryStatus | None = None
    limit: PageLimit = DEFAULT_PAGE_LIMIT
    cursor: Cursor | None = None


class EventBody(msgspec.Struct, kw_only=True):
    """What an endpoint receives: ``data`` is the order or product as the API returns it."""

    id: str
    type: str
    created_at: datetime
    data: msgspec.Raw
