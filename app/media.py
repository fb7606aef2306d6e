"""JSON in and out with msgspec, within the contract's limits.

Bodies are read once, bounded (64 KiB, chunked bodies included), checked for
``Content-Type: application/json`` and decoded straight into the route's
input Struct, so one schema validates and documents the request.
"""

from __future__ import annotations

import falcon
import msgspec

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 64 * 1024

encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}


def _decoder(schema: type) -> msgspec.json.Decoder:
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders[schema] = msgspec.json.Decoder(schema)
    return decoder


def is_json(content_type: str | None) -> bool:
    """``application/json`` with at most a utf-8 charset parameter."""
    if not content_type:
        return False
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if not name:
            continue
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def check_declared_length(req: falcon.Request) -> None:
    """Refuse a declared oversized body before reading any of it."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body must be at most {MAX_BODY_BYTES} bytes")


def read_body(req: falcon.Request) -> bytes:
    """Read the body, at most MAX_BODY_BYTES of it, Content-Length or chunked."""
    check_declared_length(req)
    if req.content_length is not None:
        body = req.bounded_stream.read()
    elif "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        # falcon's bounded_stream reads nothing without a Content-Length; the
        # server's wsgi.input ends at the last chunk, so read one byte past
        # the limit to tell "at the limit" from "over it".
        body = req.stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request body must be at most {MAX_BODY_BYTES} bytes")
    else:
        body = b""
    return body


def read_json(req: falcon.Request, schema: type):
    """Decode the body into ``schema``; 400/413/415/422 on bad input."""
    body = read_body(req)
    if not body:
        raise BadRequest("a JSON request body is required")
    if not is_json(req.content_type):
        raise UnsupportedMediaType("the request body must be application/json (utf-8)")
    try:
        return _decoder(schema).decode(body)
    except msgspec.ValidationError:
        raise  # mapped to 422 with the field path
    except msgspec.DecodeError as ex:
        raise BadRequest(f"the body is not valid JSON: {ex}") from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8") from None


def read_query(req: falcon.Request, schema: type):
    """Convert the query string into ``schema`` (strings coerced to its types)."""
    return msgspec.convert(req.params, schema, strict=False)


def write_json(resp: falcon.Response, value, status=None) -> None:
    resp.data = encoder.encode(value)
    resp.content_type = falcon.MEDIA_JSON
    if status is not None:
        resp.status = status
