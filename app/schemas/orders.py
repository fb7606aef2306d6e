"""Order shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

ProductId = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    description="A product id (lower-case UUID).",
)]


class OrderItemIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: ProductId
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]


class Address(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    line1: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    city: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    postal_code: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$",
                                         description="ISO 3166-1 alpha-2 code")]


class OrderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    items: Annotated[list[OrderItemIn], msgspec.Meta(min_length=1, max_length=50)]
    shipping_address: Address


class OrderItemOut(msgspec.Struct, kw_only=True):
    product_id: str
    quantity: int
    unit_price: str


class OrderOut(msgspec.Struct, kw_only=True):
    id: str
    user_id: str
    status: Literal["placed", "cancelled"]
    items: list[OrderItemOut]
    total: str
    currency: str
    shipping_address: Address
    created_at: datetime


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[OrderOut]
    next_cursor: str | None


class OrderQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: ProductId | None = None  # same UUID shape
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None
