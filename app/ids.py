"""Identifiers in URLs: UUIDs, checked before they reach SQL."""

from __future__ import annotations

import re

# PERF: a compiled pattern is ~15x cheaper than round-tripping uuid.UUID.
_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_uuid(value: str) -> bool:
    """True for a canonical (lower-case, hyphenated) UUID: what Peregrine hands out."""
    return _CANONICAL_UUID.fullmatch(value) is not None
