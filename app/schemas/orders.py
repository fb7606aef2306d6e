"""Order shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.schemas.common import ANY_CASE_UUID_PATTERN, DEFAULT_PAGE_LIMIT, Cursor, Input, PageLimit
from app.schemas.text import Text, worded

# Ids in any case are the same id (the contract); Structs holding them
# lower-case them on decoding, so duplicate checks and SQL see one spelling.
ProductId = Annotated[str, msgspec.Meta(
    pattern=ANY_CASE_UUID_PATTERN,
    description="A product id (a UUID; any case).",
)]
UserId = Annotated[str, msgspec.Meta(pattern=ANY_CASE_UUID_PATTERN,
                                     description="A user id (a UUID; any case).")]
# Addresses are stored as jsonb, which cannot hold U+0000 either.
AddressLine = Text(min_length=1, max_length=200)
City = Text(min_length=1, max_length=100)
PostalCode = Text(min_length=1, max_length=20)
Country = Annotated[str, msgspec.Meta(
    pattern=worded(r"[A-Z]{2}", "must be an ISO 3166-1 alpha-2 code: 2 upper-case letters"),
    description="ISO 3166-1 alpha-2 code",
)]


class OrderItemIn(Input, kw_only=True):
    product_id: ProductId
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]

    def __post_init__(self):
        self.product_id = self.product_id.lower()


class Address(Input, kw_only=True):
    line1: AddressLine
    city: City
    postal_code: PostalCode
    country: Country


class OrderIn(Input, kw_only=True):
    items: Annotated[list[OrderItemIn], msgspec.Meta(min_length=1, max_length=50)]
    shipping_address: Address


class OrderItemOut(msgspec.Struct, kw_only=True):
    product_id: str
    quantity: int
    unit_price: str


class OrderOut(msgspec.Struct, kw_only=True):
    id: str
    user_id: str | None  # None: the account was deleted; the order stays for accounting
    status: Literal["placed", "cancelled"]
    items: list[OrderItemOut]
    total: str
    currency: str
    shipping_address: Address
    created_at: datetime


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[OrderOut]
    next_cursor: str | None


class OrderQuery(Input, kw_only=True):
    user_id: UserId | None = None
    limit: PageLimit = DEFAULT_PAGE_LIMIT
    cursor: Cursor | None = None

    def __post_init__(self):
        if self.user_id is not None:
            self.user_id = self.user_id.lower()
