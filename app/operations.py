"""What each responder accepts, returns and who may call it.

Every ``on_<verb>`` responder is declared with :func:`operation`. The
declaration is read in three places, so it cannot drift from the code:
the auth middleware (deny by default), the OpenAPI generator, and the test
that walks the routes table checking every route for every role.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def __post_init__(self):
        if self.access not in ACCESS_LEVELS:
            raise ValueError(f"unknown access level {self.access!r}")


def operation(**kwargs):
    """Decorate a responder with its :class:`Operation`."""
    op = Operation(**kwargs)

    def decorate(responder):
        responder.operation = op
        return responder

    return decorate


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
