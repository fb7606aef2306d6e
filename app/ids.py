"""Identifiers: UUIDs in URLs, checked before they reach SQL; the ids this server makes up."""

from __future__ import annotations

import os
import random
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


# Ids this server makes up: request ids (X-Request-ID), trace and span ids
# (traceparent). They must be unique and uniformly random (W3C Trace Context
# samples on trace-id bits), not secret: nothing is authorised by them. A
# Mersenne Twister seeded from os.urandom per process gives both, without
# os.urandom's getrandom(2) system call per id.
# PERF: getrandbits(n).to_bytes().hex() is C calls only, ~2k instructions an
# id (callgrind); random.randbytes is Python code around the same calls.
# A private generator: random.seed() elsewhere cannot make these repeat.
_random = random.Random()
_getrandbits = _random.getrandbits
# A forked child must not hand out its parent's (or a sibling's) next ids.
os.register_at_fork(after_in_child=_random.seed)

_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def new_request_id() -> str:
    """32 lower-case hex digits."""
    return _getrandbits(128).to_bytes(16, "big").hex()


def new_trace_ids() -> tuple[str, str]:
    """A new (trace id, span id): 32 and 16 lower-case hex digits, never all zeros.

    One draw for both (PERF: one call chain per new trace); all zeros would
    be an invalid id.
    """
    hexed = _getrandbits(192).to_bytes(24, "big").hex()
    trace_id, span_id = hexed[:32], hexed[32:]
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return new_trace_ids()
    return trace_id, span_id


def new_span_id() -> str:
    """16 lower-case hex digits, never all zeros (an invalid parent id)."""
    span_id = _getrandbits(64).to_bytes(8, "big").hex()
    return span_id if span_id != _ZERO_SPAN_ID else new_span_id()
