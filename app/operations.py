"""What each responder accepts, returns and who may call it.

Every ``on_<verb>`` responder is declared with :func:`operation`. The
declaration is the one statement of a route's schema and is read in four
places, so it cannot drift from the code: the decoding step (the body and
query arrive in the responder already validated, see :func:`operation`),
the auth middleware (deny by default), the OpenAPI generator, and the test
that walks the routes table checking every route for every role.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import falcon

from app.media import read_json, read_query
from app.ratelimit import Limit

PUBLIC = "public"  # anyone, no token
USER = "user"  # any valid access token (users and admins)
ADMIN = "admin"  # admins only
ACCESS_LEVELS = (PUBLIC, USER, ADMIN)

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    access: str
    summary: str
    body: type | None = None  # msgspec Struct the body must match
    query: type | None = None  # msgspec Struct the query string must match
    response: type | None = None  # msgspec Struct of a success body; None = no body
    status: int = 200
    errors: tuple[int, ...] = ()  # error statuses worth documenting
    tag: str = "default"
    rate_limited: bool = True  # counts against the general per-client limit
    # A per-address limit (app.ratelimit.Limit) counted before the body is
    # read, so a flood of malformed bodies is refused as well.
    address_limit: Limit | None = None
    # A GET whose 200 is a body read from the near cache and nothing else: its
    # repeats may be answered from the same near entries (app/replay.py).
    replayable: bool = False

    def __post_init__(self):
        if self.access not in ACCESS_LEVELS:
            raise ValueError(f"unknown access level {self.access!r}")
        if self.replayable and (self.access != PUBLIC or self.address_limit is not None):
            raise ValueError("only a public read without a per-address limit is replayable")


def operation(**kwargs):
    """Decorate a responder with its :class:`Operation`, which then drives it.

    A declared ``body`` or ``query`` is decoded before the responder runs
    and handed to it as the ``body=`` / ``query=`` keyword argument; a
    declared success ``status`` other than 200 is set before it runs (a
    responder may still choose another, as an idempotent replay does).
    Decoding happens inside the responder call, so after every middleware:
    authentication and rate limits come before any 4xx about the body.

    PERF: a responder that declares neither and answers 200 is mounted as
    written, so reads such as a cached ``GET /v1/products/{id}`` pay nothing.
    """
    op = Operation(**kwargs)

    def decorate(responder):
        if op.body is None and op.query is None and op.status == 200:
            responder.operation = op
            return responder
        decoding = _decoding(responder, op)
        decoding.operation = op
        return decoding

    return decorate


def _decoding(responder, op: Operation):
    body, query = op.body, op.query
    status = falcon.code_to_http_status(op.status) if op.status != 200 else None

    @functools.wraps(responder)
    def decoded(resource, req, resp, **params):
        if query is not None:
            params["query"] = read_query(req, query)
        if body is not None:
            params["body"] = read_json(req, body)
        if status is not None:
            resp.status = status
        return responder(resource, req, resp, **params)

    return decoded


def responders(resource) -> dict[str, object]:
    """``{"GET": bound_method, ...}`` for each responder a resource defines."""
    found = {}
    for verb in HTTP_METHODS:
        method = getattr(resource, f"on_{verb}", None)
        if method is not None:
            found[verb.upper()] = method
    return found


def operation_of(resource, method: str) -> Operation | None:
    """The declaration that governs ``method``; HEAD is GET's (see :func:`responder_for`)."""
    return getattr(responder_for(resource, method), "operation", None)


def responder_for(resource, method: str):
    """The responder for ``method``: HEAD falls back to ``on_get``.

    The contract answers HEAD wherever GET is; the router mounts ``on_get``
    for HEAD (falcon drops the body and keeps Content-Length), and because
    this function decides both, HEAD is authorised exactly as GET is.
    """
    verb = method.lower()
    found = getattr(resource, f"on_{verb}", None)
    if found is None and verb == "head":
        found = getattr(resource, "on_get", None)
    return found
