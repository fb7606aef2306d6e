"""Domain exceptions, and the one place they become HTTP responses.

Resources and services raise these; :func:`register` installs the handlers
that turn them (and falcon's own errors, and anything unexpected) into the
contract's error envelope::

    {"error": {"code": ..., "message": ..., "details": [...]}, "request_id": ...,
     "trace_id": ...}

``trace_id`` is the request's W3C trace id (app/tracing.py), the one in its
log lines and its ``traceparent`` response header.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated

import falcon
import msgspec

from app.schemas.messages import in_words
from app.schemas.text import NUL_FREE, NUL_MESSAGE, PATTERN_WORDS

log = logging.getLogger(__name__)


class AppError(Exception):
    """An error with a contract code; subclasses fix the status and code."""

    status = falcon.HTTP_500
    code = "internal"
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, details=None, headers=None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}


class BadRequest(AppError):
    status, code, default_message = falcon.HTTP_400, "bad_request", "the request is malformed"


class Unauthorized(AppError):
    """401 with an RFC 6750 challenge whose description says what to do next."""

    status, code, default_message = falcon.HTTP_401, "unauthorized", "authentication required"

    def __init__(self, message=None, **kwargs):
        super().__init__(message, **kwargs)
        description = self.message.replace("\\", "").replace('"', "'")
        self.headers.setdefault(
            "WWW-Authenticate", f'Bearer error="invalid_token", error_description="{description}"')


class AccountGone(Unauthorized):
    """A valid access token whose account no longer exists."""

    default_message = "the access token's account no longer exists: log in again"


class MfaRequired(Unauthorized):
    """The password was right; the account wants a second factor next."""

    code = "mfa_required"
    default_message = ("a second factor is needed: POST /v1/auth/login/mfa with this"
                       " mfa_token and a code")

    def __init__(self, mfa_token: str, expires_in: int):
        super().__init__(details=[{"mfa_token": mfa_token, "expires_in": expires_in}])


class Forbidden(AppError):
    status, code, default_message = falcon.HTTP_403, "forbidden", "not allowed"


class NotFound(AppError):
    status, code, default_message = falcon.HTTP_404, "not_found", "not found"


class Conflict(AppError):
    status, code, default_message = falcon.HTTP_409, "conflict", "conflict"


class OutOfStock(AppError):
    status, code, default_message = falcon.HTTP_409, "out_of_stock", "not enough stock"


class PreconditionFailed(AppError):
    status, code = falcon.HTTP_412, "precondition_failed"
    default_message = "the resource has changed"


class PayloadTooLarge(AppError):
    status, code = falcon.HTTP_413, "payload_too_large"
    default_message = "the request body is too large"


class UnsupportedMediaType(AppError):
    status, code = falcon.HTTP_415, "unsupported_media_type"
    default_message = "send application/json"


class ValidationFailed(AppError):
    status, code = falcon.HTTP_422, "validation_failed"
    default_message = "the request is invalid"


class RateLimited(AppError):
    status, code, default_message = falcon.HTTP_429, "rate_limited", "too many requests"

    def __init__(self, retry_after: int, message=None, **kwargs):
        super().__init__(message, **kwargs)
        self.headers["Retry-After"] = str(max(1, int(retry_after)))


class Unavailable(AppError):
    """A dependency is down or saturated: the client should retry later."""

    status, code = falcon.HTTP_503, "unavailable"
    default_message = "the service is temporarily unavailable"

    def __init__(self, message=None, *, retry_after: int = 1, **kwargs):
        super().__init__(message, **kwargs)
        self.headers["Retry-After"] = str(retry_after)


class ClientDisconnected(AppError):
    """The client closed the connection (or stalled past the timeout) mid-body.

    Nobody is left to read the answer; the status (nginx's 499) is for the
    request log and the metrics, so an aborted upload is neither counted as
    a server error nor logged with a traceback.
    """

    status, code = "499 Client Closed Request", "client_disconnected"
    default_message = "the client closed the connection before sending the whole body"


class DatabaseUnavailable(Unavailable):
    """Postgres is unreachable or the pool had no free connection in time."""


class QueryTimeout(Unavailable):
    """A statement or lock wait hit its server-side timeout."""


class Error(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: list[dict] | None = None


class ErrorEnvelope(msgspec.Struct):
    error: Error
    request_id: str
    # Not required: nginx's own answers (a 413 before the app, a 502 while it
    # is down) carry the contract's two fields only.
    trace_id: Annotated[str, msgspec.Meta(
        description="The request's W3C trace id (32 hex digits), as in its traceparent "
                    "response header and its log lines. Absent when the reverse proxy "
                    "answered without reaching the service.")] = ""


_encode = msgspec.json.Encoder().encode

# falcon's status codes mapped to contract codes (anything else is generic).
_FALCON_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 411: "bad_request",
    412: "precondition_failed", 413: "payload_too_large", 414: "bad_request",
    415: "unsupported_media_type", 422: "validation_failed", 429: "rate_limited",
    431: "bad_request", 503: "unavailable",
}
_FALCON_MESSAGES = {
    404: "no such resource", 405: "method not allowed on this resource",
}


def write_error(req, resp, status, code: str, message: str, details=None, headers=None):
    """Render the error envelope into ``resp``."""
    context = req.context
    request_id = getattr(context, "request_id", "") or ""
    trace_id = getattr(context, "trace_id", "") or ""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(
        ErrorEnvelope(Error(code, message, details or None), request_id, trace_id)
    )
    for name, value in (headers or {}).items():
        resp.set_header(name, value)
    req.context.error_code = code


def _handle_app_error(req, resp, ex: AppError, params):
    write_error(req, resp, ex.status, ex.code, ex.message, ex.details, ex.headers)


def _handle_http_error(req, resp, ex: falcon.HTTPError, params):
    status = ex.status_code
    code = _FALCON_CODES.get(status, "internal" if status >= 500 else "bad_request")
    message = ex.description or _FALCON_MESSAGES.get(status) or ex.title or "error"
    write_error(req, resp, ex.status, code, message, headers=ex.headers)


class InvalidInput(msgspec.ValidationError):
    """msgspec's error for an input, with the schema it was decoded into.

    The schema lets the details name what would have been accepted (an
    enum's values); app/media.py raises it in place of msgspec's own.
    """

    def __init__(self, message: str, schema: type):
        super().__init__(message)
        self.schema = schema


# "Expected `int` >= 1 - at `$.items[0].quantity`"
_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]*)`")


def validation_details(ex: msgspec.ValidationError, schema: type | None = None) -> list[dict]:
    """Turn msgspec's message into ``[{"field": "$.path", "message": ...}]``, in words.

    The field path stays msgspec's (``$.items[0].quantity``); the message
    says what the value must be ("must be at least 1"), never a regex.
    """
    match = _AT_PATH.match(str(ex))
    assert match is not None  # every part of the pattern is optional
    message, path = match.group("message"), match.group("path") or "$"
    named = _UNKNOWN_FIELD.search(message) or _MISSING_FIELD.search(message)
    if named:
        path = f"{path}.{named.group(1)}"
    return [{"field": path, "message": in_words(message, schema or getattr(ex, "schema", None),
                                                 path)}]


_NUL_WORDS = PATTERN_WORDS[NUL_FREE]


def _handle_validation_error(req, resp, ex: msgspec.ValidationError, params):
    details = validation_details(ex)
    message = "the request is invalid"
    if details[0]["message"] == _NUL_WORDS:
        message = NUL_MESSAGE  # the one rule every text field shares: worth the headline
    write_error(req, resp, falcon.HTTP_422, "validation_failed", message, details)


def _handle_client_disconnected(req, resp, ex: ClientDisconnected, params):
    # One line, no traceback: the client went away, nothing failed here.
    log.info("client disconnected: %s", ex.__cause__ or ex.message)
    write_error(req, resp, ex.status, ex.code, ex.message)


def _handle_unexpected(req, resp, ex: Exception, params):
    log.exception(
        "unhandled error", extra={"request_id": getattr(req.context, "request_id", None)}
    )
    write_error(req, resp, falcon.HTTP_500, "internal", "internal error")


def register(app: falcon.App) -> None:
    """Install the handlers; falcon picks the most specific one per exception."""
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(AppError, _handle_app_error)
    app.add_error_handler(ClientDisconnected, _handle_client_disconnected)
    app.add_error_handler(msgspec.ValidationError, _handle_validation_error)
