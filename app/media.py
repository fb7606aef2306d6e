"""JSON in and out with msgspec, within the contract's limits.

Bodies are read once, bounded (64 KiB, chunked bodies included), checked for
``Content-Type: application/json`` and decoded straight into the route's
input Struct, so one schema validates and documents the request.
"""

from __future__ import annotations

from collections.abc import Mapping

import falcon
import msgspec
import msgspec.inspect as mi
from gunicorn.http.errors import ParseException as GunicornParseError

from app.errors import (
    BadRequest,
    ClientDisconnected,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from hotpath.http import HttpError as WorkerHttpError

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
        body = _read(req.bounded_stream, None)
    elif "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        # falcon's bounded_stream reads nothing without a Content-Length; the
        # server's wsgi.input ends at the last chunk, so read one byte past
        # the limit to tell "at the limit" from "over it".
        body = _read(req.stream, MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request body must be at most {MAX_BODY_BYTES} bytes")
    else:
        body = b""
    return body


def _read(stream, size: int | None) -> bytes:
    """Read from ``wsgi.input``, turning the server's complaints into domain errors.

    The server raises from the body stream when the client's bytes stop
    making a body: the connection was closed or timed out (OSError: the
    worker's ClientDisconnected, gunicorn's NoMoreData, a reset), or the
    framing is broken (an oversized or malformed chunk size). Those are the
    client's doing, never a 500.
    """
    try:
        return stream.read(size)
    except OSError as ex:
        raise ClientDisconnected() from ex
    except WorkerHttpError as ex:  # hotpath.worker: carries the status to answer
        error = PayloadTooLarge if ex.status == 413 else BadRequest
        raise error(f"the request body is malformed: {ex.message}") from None
    except GunicornParseError as ex:  # gunicorn's own workers
        raise BadRequest(f"the request body is malformed: {ex}") from None


def read_json(req: falcon.Request, schema: type):
    """Decode the body into ``schema``; 400/413/415/422 on bad input."""
    body = read_body(req)
    if not body:
        raise BadRequest("a JSON request body is required")
    if not is_json(req.content_type):
        raise UnsupportedMediaType("the request body must be application/json (utf-8)")
    try:
        return _decoder(schema).decode(body)
    except msgspec.ValidationError as ex:
        whole = _with_whole_numbers(body, schema)
        if whole is not None:
            return whole
        # A 422 with the field path; the schema lets the details name allowed values.
        raise InvalidInput(str(ex), schema) from None
    except msgspec.DecodeError as ex:
        raise BadRequest(f"the body is not valid JSON: {ex}") from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8") from None


def _with_whole_numbers(body: bytes, schema: type):
    """The body decoded with ``37.0`` taken as the integer 37, or None.

    JSON has one number type, and JSON Schema's ``integer`` (what the OpenAPI
    document promises) includes ``37.0``; msgspec's strict decoding refuses
    it. Only bodies that failed strict decoding pay for this second pass, and
    nothing else is coerced: ``"37"`` and ``37.5`` stay errors.
    """
    try:
        return msgspec.convert(_whole(msgspec.json.decode(body)), schema, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _whole(value):
    if type(value) is float:
        return int(value) if value.is_integer() else value
    if type(value) is dict:
        return {k: _whole(v) for k, v in value.items()}
    if type(value) is list:
        return [_whole(v) for v in value]
    return value


def read_query(req: falcon.Request, schema: type):
    """Convert the query string into ``schema`` (strings coerced to its types)."""
    params = req.params
    try:
        query: object = msgspec.convert(params, schema, strict=False)
    except msgspec.ValidationError as ex:
        raise InvalidInput(str(ex), schema) from None
    if "null" in params.values():
        _refuse_null_text(query, params, schema)
    return query


_TYPE_NAMES: dict[type, str] = {mi.BoolType: "bool", mi.IntType: "int", mi.FloatType: "float"}


def _refuse_null_text(query, params: Mapping, schema: type) -> None:
    """Refuse ``?name=null`` where the field takes no text.

    msgspec's lax conversion reads the text ``null`` as None for a field
    typed ``X | None``, unless X is a string. A query string has no null (the
    document says so): None there means "left out", so ``?in_stock=null``
    would silently mean no filter instead of the 422 it is.
    """
    for field in msgspec.structs.fields(schema):
        if params.get(field.encode_name) != "null" or getattr(query, field.name) is not None:
            continue
        info = mi.type_info(field.type)
        members = [t for t in getattr(info, "types", (info,)) if not isinstance(t, mi.NoneType)]
        at = f" - at `$.{field.encode_name}`"
        if any(isinstance(t, mi.LiteralType) for t in members):
            raise InvalidInput(f"Invalid enum value 'null'{at}", schema)
        names = " | ".join(_TYPE_NAMES.get(type(t), "value") for t in members) or "value"
        raise InvalidInput(f"Expected `{names}`, got `str`{at}", schema)


def write_json(resp: falcon.Response, value) -> None:
    """Render ``value`` as the JSON body (the status comes from the route's declaration)."""
    resp.data = encoder.encode(value)
    resp.content_type = falcon.MEDIA_JSON
