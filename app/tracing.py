"""W3C Trace Context (w3.org/TR/trace-context): continue the caller's trace or start one.

Every request belongs to a trace: the caller's when its ``traceparent`` is
valid, otherwise a new one (an invalid header is never an error: the
request is served under a new trace id). This server's part of it is a new
span; the ``traceparent`` naming that span goes back on the response, into
every log line of the request (app/logs.py) and, as a comment, in front of
every SQL statement (app/db.py), so a slow query in pg_stat_activity or the
slow-query log leads back to its request. ``tracestate`` is the vendors'
list: kept when well-formed, handed on unchanged, never interpreted.

Stdlib only (and app.ids): app/logs.py imports this, and gunicorn's master
imports app/logs.py for its log format.
"""

from __future__ import annotations

import contextvars
import re

from app.ids import new_span_id, new_trace_ids

#: (request id, trace id, this server's traceparent) of the request being
#: handled; greenlet-local under gevent (contextvars are per greenlet).
current: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "current_request", default=None)

#: A version-00 traceparent is exactly this long; later versions may append
#: "-"-separated fields after it, which this version does not read.
_V00_LENGTH = 55
#: Past this a header is not a traceparent of any version worth reading.
_MAX_TRACEPARENT = 512
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_INVALID_TRACE_ID = "0" * 32
_INVALID_PARENT_ID = "0" * 16
#: Of the trace flags, version 00 defines only "sampled"; the other bits must
#: be sent as zero.
_SAMPLED = 0x01

#: tracestate limits: members and characters a vendor must propagate.
_MAX_TRACESTATE = 512
_MAX_TRACESTATE_MEMBERS = 32
_TRACESTATE_MEMBER = re.compile(
    r"(?P<key>[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, trace flags) of a valid ``traceparent``; None for anything else.

    Version 00 must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``, lower case;
    version ff is invalid; a later version is read as far as version 00 goes
    and must continue with "-" if it continues (the spec's forward
    compatibility). All-zero trace or parent ids are invalid.
    """
    if value is None or not _V00_LENGTH <= len(value) <= _MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == _INVALID_TRACE_ID or parent_id == _INVALID_PARENT_ID:
        return None
    if len(value) > _V00_LENGTH and (version == "00" or value[_V00_LENGTH] != "-"):
        return None
    return trace_id, flags


def clean_tracestate(value: str | None) -> str | None:
    """``tracestate`` without empty members, or None when absent or malformed.

    Malformed (a bad member, a duplicate key, more than 32 members or 512
    characters) drops the whole list, as the spec allows: only a list of
    checked printable members is ever handed on in a header.
    """
    if not value or len(value) > _MAX_TRACESTATE:
        return None
    members = [member.strip(" \t") for member in value.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > _MAX_TRACESTATE_MEMBERS:
        return None
    keys = set()
    for member in members:
        match = _TRACESTATE_MEMBER.fullmatch(member)
        if match is None or match["key"] in keys:
            return None
        keys.add(match["key"])
    return ",".join(members)


def continue_trace(traceparent: str | None) -> tuple[str, str, bool]:
    """(trace id, this server's traceparent, whether the caller's trace goes on).

    The caller's trace id and sampled flag are kept; the span id is this
    server's, new for every request. A new trace is not sampled: nothing
    here records spans.
    """
    if traceparent is not None:
        parsed = parse_traceparent(traceparent)
        if parsed is not None:
            trace_id, flags = parsed
            sampled = "01" if int(flags, 16) & _SAMPLED else "00"
            return trace_id, f"00-{trace_id}-{new_span_id()}-{sampled}", True
    trace_id, span_id = new_trace_ids()
    return trace_id, f"00-{trace_id}-{span_id}-00", False
