"""The event bodies an endpoint receives, typed per event for the OpenAPI document.

The worker sends ``app.schemas.webhooks.EventBody``, whose ``data`` is the
stored JSON as it was committed; these say what that JSON is for each type,
so the ``webhooks`` object of /openapi.json describes the exact bytes sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from app.schemas.catalog import ProductOut
from app.schemas.orders import OrderOut


class ProductDeleted(msgspec.Struct, kw_only=True):
    """The data of the product.updated event a deletion commits (404 from then on)."""

    id: str
    deleted: bool  # always true (not Literal[True]: generated clients cannot read a boolean enum)


class OrderPlacedEvent(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["order.placed"]
    created_at: datetime
    data: OrderOut


class OrderCancelledEvent(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["order.cancelled"]
    created_at: datetime
    data: OrderOut


class ProductUpdatedEvent(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["product.updated"]
    created_at: datetime
    data: ProductOut


class ProductDeletedEvent(msgspec.Struct, kw_only=True):
    """A deletion is a product.updated event too, with the smaller data."""

    id: str
    type: Literal["product.updated"]
    created_at: datetime
    data: ProductDeleted


#: Event type -> what it means, and the bodies it may carry.
EVENTS: dict[str, tuple[str, tuple[type, ...]]] = {
    "order.placed": ("An order was placed; data is the order as POST /v1/orders "
                     "answered it.", (OrderPlacedEvent,)),
    "order.cancelled": ("An order was cancelled; data is the cancelled order.",
                        (OrderCancelledEvent,)),
    "product.updated": ("A product was created, changed or deleted; data is the product "
                        "as GET /v1/products/{product_id} returns it, or "
                        "{id, deleted: true} after a deletion.",
                        (ProductUpdatedEvent, ProductDeletedEvent)),
}
