"""Catalog shapes: categories and products."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.schemas.text import Cursor, Text, anchored

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=100,
                                   pattern=anchored(r"[a-z0-9]+(?:-[a-z0-9]+)*"))]
Money = Annotated[str, msgspec.Meta(
    pattern=anchored(r"[0-9]{1,10}(?:\.[0-9]{1,2})?"),
    description='A decimal string with up to two places, e.g. "1200.00".',
)]
Currency = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Z]{3}"),
                                       description="ISO 4217 code")]
Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                  pattern=anchored(r"[A-Za-z0-9._-]+"))]
CategoryName = Text(min_length=1, max_length=100)
ProductName = Text(min_length=1, max_length=200)
Description = Text(max_length=5000)
SearchText = Text(min_length=1, max_length=100)
Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
SortKey = Literal["name", "-name", "price", "-price", "created_at", "-created_at"]


class CategoryIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: CategoryName
    slug: Slug


class CategoryOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    slug: str


class CategoryList(msgspec.Struct, kw_only=True):
    items: list[CategoryOut]
    next_cursor: None = None


class ProductIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Sku
    name: ProductName
    description: Description = ""
    price: Money
    currency: Currency = "USD"
    category: Slug | None = None
    stock: Stock = 0


class ProductPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out stay as they are; ``category: null`` removes the category."""

    sku: Sku | UnsetType = UNSET
    name: ProductName | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    price: Money | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    category: Slug | None | UnsetType = UNSET
    stock: Stock | UnsetType = UNSET


class ProductOut(msgspec.Struct, kw_only=True):
    id: str
    sku: str
    name: str
    description: str
    price: str
    currency: str
    category: str | None
    stock: int
    created_at: datetime
    updated_at: datetime


class ProductPage(msgspec.Struct, kw_only=True):
    items: list[ProductOut]
    next_cursor: str | None


class ProductQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    category: Slug | None = None
    q: SearchText | None = None
    min_price: Money | None = None
    max_price: Money | None = None
    in_stock: bool | None = None
    sort: SortKey = "-created_at"
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Cursor | None = None
