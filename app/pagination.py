"""Opaque keyset cursors: the sort key of the last item, base64url JSON.

A cursor only says where to resume; it grants nothing, so it is not signed.
A cursor that does not decode to the expected shape is a 422 on ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import msgspec

from app.errors import ValidationFailed


#: A UUID in canonical text form, as cursors carry ids.
UUIDText = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


def encode_cursor(*values) -> str:
    raw = msgspec.json.encode(list(values))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, shape: type):
    """Decode ``cursor`` into ``shape`` (e.g. ``tuple[datetime, str]``)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=shape)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationFailed(
            "the cursor is not valid", details=[{"field": "$.cursor", "message": "invalid cursor"}]
        ) from None


def page(rows: list, limit: int, key) -> tuple[list, str | None]:
    """Split ``limit + 1`` fetched rows into a page and the next cursor."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))
