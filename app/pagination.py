"""Opaque keyset cursors: the sort key of the last item, base64url JSON.

A cursor only says where to resume; it grants nothing, so it is not signed.
Since anyone can forge one, a cursor that does not decode to the expected
shape, or holds a value the database cannot compare (see
:func:`_storable`), is a 422 on ``cursor``, never a database error.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated

import msgspec

from app.errors import ValidationFailed
from app.schemas.common import UUID_PATTERN

#: A UUID in canonical text form, as cursors carry ids.
UUIDText = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]

#: Bound on a decimal sort key: prices are numeric(12, 2), so anything
#: beyond this never came from us (and would overflow numeric).
_MAX_DECIMAL = Decimal(10) ** 12


def encode_cursor(*values) -> str:
    raw = msgspec.json.encode(list(values))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, shape: type):
    """Decode ``cursor`` into ``shape`` (e.g. ``tuple[datetime, str]``)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return _storable(msgspec.json.decode(raw, type=shape))
    # ValueError also covers non-ASCII text and what _storable refuses;
    # OverflowError a datetime that leaves the calendar when moved to UTC.
    except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError):
        raise ValidationFailed(
            "the cursor is not valid", details=[{"field": "$.cursor", "message": "invalid cursor"}]
        ) from None


def _storable(value):
    """``value`` (a decoded cursor) as Postgres can compare it; ValueError if it cannot.

    msgspec checks the shape but accepts more than Postgres does: datetimes
    with offsets beyond +-15:59, NaN and huge decimals, strings with NUL.
    The cursors we issue hold UTC datetimes, finite two-place prices and
    NUL-free text, so anything else was forged.
    """
    if isinstance(value, (tuple, list)):
        return type(value)(_storable(item) for item in value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a cursor datetime must carry its offset")
        return value.astimezone(timezone.utc)
    if isinstance(value, Decimal):
        if not value.is_finite() or not -_MAX_DECIMAL < value < _MAX_DECIMAL:
            raise ValueError("a cursor decimal must be a finite price")
        return value
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("a cursor string must not contain NUL")
    return value


def page(rows: list, limit: int, key) -> tuple[list, str | None]:
    """Split ``limit + 1`` fetched rows into a page and the next cursor."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))
