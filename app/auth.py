"""Authorization in one place: every route says who may call it; deny by default.

:class:`AccessControl` runs after routing, reads the responder's
:class:`~app.operations.Operation`, verifies the bearer token when the route
is not public, checks the role, and applies the general rate limit and the
route's own per-address limit, if it declares one. A route
without a declaration cannot even be mounted (see the factory).
"""

from __future__ import annotations

import ipaddress

from app import tokens
from app.errors import AccountGone, Forbidden, Unauthorized
from app.operations import ADMIN, PUBLIC, operation_of
from app.ratelimit import Limit, RateLimiter

_LOOPBACK = ("127.0.0.1", "::1", "")
# What a 401's error_description tells the client to do (RFC 6750 §3).
_EXPIRED = "the access token has expired: refresh it"
_INVALID = "the access token is invalid: log in again"
_UNKNOWN = object()  # not looked up yet (None is "no declaration")


def client_ip(req) -> str | None:
    """The caller's address. ``X-Real-IP`` is trusted only from a local proxy.

    nginx on the same host (loopback or unix socket) sets it; a client that
    talks to gunicorn directly cannot spoof it from elsewhere.
    """
    remote = req.env.get("REMOTE_ADDR") or ""
    if remote in _LOOPBACK or remote.startswith("unix:"):
        forwarded = req.get_header("X-Real-IP")
        if forwarded:
            remote = forwarded.strip()
    # An IPv6 zone ("fe80::1%eth0") names the proxy's interface, not the
    # client, and Postgres' inet refuses it: the address is what counts.
    try:
        return str(ipaddress.ip_address(remote.partition("%")[0]))
    except ValueError:
        return None


def bearer_token(req) -> str:
    header = req.get_header("Authorization")
    if not header:
        raise Unauthorized("an access token is required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("use Authorization: Bearer <access token>")
    return token


class AccessControl:
    """Token, role and general rate limit, for every routed request.

    ``current_role(user_id)`` looks the account's role up now. It is asked
    only when a token claims ``admin`` (admin traffic is rare; user traffic
    pays nothing): a demoted admin is a user from its next request on, and a
    deleted account's token stops working.
    """

    def __init__(self, secret: bytes, limiter: RateLimiter, general_limit_per_minute: int,
                 metrics, current_role):
        self._authenticate = tokens.Authenticator(secret)
        self._current_role = current_role
        self._limiter = limiter
        self._metrics = metrics
        self._general = Limit("general", general_limit_per_minute, 60, fail_closed=False)
        self._general_limit = str(general_limit_per_minute)
        # PERF: each route's declaration per (resource, method), looked up once (~2.5k
        # instructions a request). Capped: a server may be sent any method token.
        self._operations: dict[tuple[object, str], object] = {}

    def process_resource(self, req, resp, resource, params):
        op = self._operation(resource, req.method) if resource is not None else None
        if op is None:
            # falcon answers 404/405 itself, and OPTIONS with its default
            # responder (Allow, no body, nothing read or written): a CORS
            # preflight carries no credentials and must not need any.
            return
        if op.access != PUBLIC:
            try:
                principal = self._authenticate(bearer_token(req))
            except tokens.InvalidToken as ex:
                self._metrics.incr("auth.token.invalid")
                raise Unauthorized(_EXPIRED if ex.expired else _INVALID) from None
            if principal.is_admin:
                principal = self._with_current_role(principal)
            if op.access == ADMIN and not principal.is_admin:
                raise Forbidden("this needs the admin role")
            req.context.user = principal
        if op.rate_limited and self._general.limit > 0:
            user = req.context.user
            identity = f"user:{user.id}" if user else f"ip:{client_ip(req)}"
            quota = self._limiter.hit(self._general, identity)
            if quota is not None:
                # Set now, so the answer carries them whatever the route does.
                resp.set_header("RateLimit-Limit", self._general_limit)
                resp.set_header("RateLimit-Remaining", str(quota.remaining))
                resp.set_header("RateLimit-Reset", str(quota.reset))
        if op.address_limit is not None:
            self._limiter.hit(op.address_limit, client_ip(req) or "unknown")

    def _operation(self, resource, method: str):
        found = self._operations.get((resource, method), _UNKNOWN)
        if found is _UNKNOWN:
            found = operation_of(resource, method)
            if len(self._operations) < 1024:
                self._operations[(resource, method)] = found
        return found

    def _with_current_role(self, principal: tokens.Principal) -> tokens.Principal:
        role = self._current_role(principal.id)
        if role is None:
            self._metrics.incr("auth.token.unknown_user")
            raise AccountGone()
        if role == principal.role:
            return principal
        self._metrics.incr("auth.token.stale_role")
        return tokens.Principal(principal.id, role)
