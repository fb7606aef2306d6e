"""Catalog shapes: categories and products."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.schemas.common import DEFAULT_PAGE_LIMIT, Cursor, Input, PageLimit
from app.schemas.text import Text, worded

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=100,
                                   pattern=worded(r"[a-z0-9]+(?:-[a-z0-9]+)*",
                                                  "must be lower-case letters and digits, "
                                                  "in words joined by single hyphens"))]
Money = Annotated[str, msgspec.Meta(
    pattern=worded(r"[0-9]{1,10}(?:\.[0-9]{1,2})?",
                   'must be a decimal string of up to 10 digits and 2 places, e.g. "1200.00"'),
    description='A decimal string with up to two places, e.g. "1200.00".',
)]
Currency = Annotated[str, msgspec.Meta(
    pattern=worded(r"[A-Z]{3}", "must be an ISO 4217 code: 3 upper-case letters"),
    description="ISO 4217 code",
)]
Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                  pattern=worded(r"[A-Za-z0-9._-]+",
                                                 "must be letters, digits, '.', '_' or '-'"))]
CategoryName = Text(min_length=1, max_length=100)
ProductName = Text(min_length=1, max_length=200)
Description = Text(max_length=5000)
SearchText = Text(min_length=1, max_length=100)
Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
SortKey = Literal["name", "-name", "price", "-price", "created_at", "-created_at"]


class CategoryIn(Input, kw_only=True):
    name: CategoryName
    slug: Slug


class CategoryOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    slug: str


class CategoryList(msgspec.Struct, kw_only=True):
    items: list[CategoryOut]
    next_cursor: None = None


class ProductIn(Input, kw_only=True):
    sku: Sku
    name: ProductName
    description: Description = ""
    price: Money
    currency: Currency = "USD"
    category: Slug | None = None
    stock: Stock = 0


class ProductPatch(Input, kw_only=True):
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


class ProductQuery(Input, kw_only=True):
    category: Slug | None = None
    q: SearchText | None = None
    min_price: Money | None = None
    max_price: Money | None = None
    in_stock: bool | None = None
    sort: SortKey = "-created_at"
    limit: PageLimit = DEFAULT_PAGE_LIMIT
    cursor: Cursor | None = None
