"""Identifiers in URLs: UUIDs, checked before they reach SQL."""

from __future__ import annotations

import uuid


def is_uuid(value: str) -> bool:
    """True for a canonical UUID string (what Peregrine hands out)."""
    if len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
