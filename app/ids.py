"""Identifiers in URLs: UUIDs, checked before they reach SQL."""

from __future__ import annotations

import re

from app.schemas.common import UUID_PATTERN

# PERF: a compiled pattern is ~15x cheaper than round-tripping uuid.UUID.
_CANONICAL_UUID = re.compile(UUID_PATTERN)


def is_uuid(value: str) -> bool:
    """True for a canonical (lower-case, hyphenated) UUID: what Peregrine hands out."""
    return _CANONICAL_UUID.fullmatch(value) is not None


class CanonicalIds:
    """Falcon middleware: path ids (``{..._id}``) in lower case before any responder.

    The contract accepts ids in any case as the same id; below this point
    every id is canonical, so SQL, cache keys, ownership checks and
    ``Location`` headers compare and print one spelling.
    """

    def process_resource(self, req, resp, resource, params):
        for name, value in params.items():
            if name.endswith("_id"):
                params[name] = value.lower()
