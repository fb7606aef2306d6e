"""Verify HS256 access tokens: the pure-Python reference, which is the spec.

``hotpath._jwt_c`` must behave exactly like this module, down to the
``InvalidTokenError.reason`` and the claims returned. The checks follow
RFC 8725 (JWT best current practice) and run in this order, so the first
failing one names the reason:

1. Token: at most 4096 characters, ASCII, exactly three segments of strict
   base64url (alphabet ``A-Z a-z 0-9 - _``, no ``=`` padding, no length
   of 1 mod 4, zero unused trailing bits) -> ``oversized`` / ``malformed``.
2. Header (before any MAC): a JSON object with no member named twice at
   its top level -> ``bad_header``; ``alg`` exactly ``"HS256"`` ->
   ``bad_alg``; ``typ`` exactly the expected one -> ``bad_typ``; none of
   ``crit jku x5u jwk x5c`` -> ``forbidden_header``; ``kid``, if present,
   a string -> ``bad_kid``.
3. Key: with a key table the ``kid`` is required and only looked up in the
   table -> ``bad_kid`` / ``unknown_kid``.
4. Signature: 32 bytes equal, in constant time, to HMAC-SHA256 of
   ``header.payload`` -> ``bad_signature``. The payload is decoded only
   after this, so unsigned input never reaches the claims parser.
5. Claims: a JSON object with no member named twice at its top level ->
   ``bad_payload``; then ``exp`` (required), ``nbf``, ``iat``, ``iss``,
   ``aud``, ``sub`` as documented in ``verify``.
"""

import base64
import hmac
import re
import time
from collections.abc import Mapping

import msgspec

from hotpath._jwt_errors import InvalidTokenError

__all__ = ("InvalidTokenError", "verify")

#: Longest token accepted, in characters; checked before anything else.
MAX_TOKEN_LENGTH = 4096
#: Shortest HMAC key accepted (RFC 7518 §3.2: at least the hash size).
MIN_KEY_LENGTH = 32

_SIGNATURE_LENGTH = 32
# NOTE: x5c is not in RFC 8725's list but, like jwk, it embeds a key in the
# token; we never want a token to choose its own key.
_FORBIDDEN_HEADERS = ("crit", "jku", "x5u", "jwk", "x5c")
_TOKEN = re.compile(r"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)")
# A segment of length 2 (3) mod 4 ends in a character whose low 4 (2) bits
# are padding; only these characters have them zero (canonical encoding).
_CANONICAL_LAST = {
    2: frozenset("AQgw"),
    3: frozenset("AEIMQUYcgkosw048"),
}
_PADDING = ("", "", "==", "=")
# A JSON string in UTF-8, escapes included; it only has to find the ends of
# strings in text that msgspec has already accepted.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Every byte but , [ ] { } (for bytes.translate, to delete).
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b",[]{}")))
_COMMA = ord(",")
_OPENERS = b"[{"
_decode_json = msgspec.json.decode


def verify(token, key, *, issuer, audience, typ, leeway=30, now=None):
    """Verify an HS256 JWT and return its claims.

    Args:
        token (str | bytes): The compact JWS, e.g. from ``Authorization``.
        key (bytes | Mapping[str, bytes]): The HMAC key (at least 32 bytes),
            or a table of keys by ``kid``; then the header must name one.
        issuer (str): Required exact value of ``iss``.
        audience (str): Required value of ``aud``: equal to it, or, when
            ``aud`` is a list of strings, one of its items (RFC 7519 §4.1.3,
            and what PyJWT does).
        typ (str): Required exact value of the header ``typ``.
        leeway (int | float): Seconds of clock skew allowed on ``exp``,
            ``nbf`` and ``iat``.
        now (int | float | None): Unix time to check against; default
            ``time.time()``.

    Returns:
        dict: The claims. ``exp`` is a number (not a bool) with
        ``now <= exp + leeway``; ``nbf`` and ``iat``, when present, are
        numbers ``<= now + leeway``; ``iss`` and ``sub`` are strings.

    Raises:
        InvalidTokenError: The token must be refused; ``reason`` says why.
        TypeError: ``token`` or ``key`` has the wrong type.
        ValueError: A key is shorter than 32 bytes (a configuration error).
    """
    if isinstance(key, bytes):
        _check_key(key)
    elif not isinstance(key, Mapping):
        raise TypeError("key must be bytes or a Mapping[str, bytes]")
    if not isinstance(token, (str, bytes)):
        raise TypeError("token must be str or bytes")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError("oversized")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidTokenError("malformed") from None

    match = _TOKEN.fullmatch(token)
    if match is None or not all(map(_is_canonical, match.groups())):
        raise InvalidTokenError("malformed")
    header_b64, payload_b64, signature_b64 = match.groups()

    header = _decode_object(header_b64, "bad_header")
    if header.get("alg") != "HS256":
        raise InvalidTokenError("bad_alg")
    if header.get("typ") != typ:
        raise InvalidTokenError("bad_typ")
    if any(name in header for name in _FORBIDDEN_HEADERS):
        raise InvalidTokenError("forbidden_header")
    if "kid" in header and type(header["kid"]) is not str:
        raise InvalidTokenError("bad_kid")
    secret = key if isinstance(key, bytes) else _lookup_key(key, header.get("kid"))

    signature = _b64decode(signature_b64)
    signing_input = token[: match.end(2)].encode("ascii")
    expected = hmac.digest(secret, signing_input, "sha256")
    if len(signature) != _SIGNATURE_LENGTH or not hmac.compare_digest(
        signature, expected
    ):
        raise InvalidTokenError("bad_signature")

    claims = _decode_object(payload_b64, "bad_payload")
    _check_claims(claims, issuer, audience, leeway, time.time() if now is None else now)
    return claims


def _check_key(secret):
    if not isinstance(secret, bytes):
        raise TypeError("an HMAC key must be bytes")
    if len(secret) < MIN_KEY_LENGTH:
        raise ValueError(f"an HMAC key must be at least {MIN_KEY_LENGTH} bytes")


def _lookup_key(table, kid):
    # RFC 8725 §3.10: the kid is only ever a key into our own table.
    if kid is None:
        raise InvalidTokenError("bad_kid")
    secret = table.get(kid)
    if secret is None:
        raise InvalidTokenError("unknown_kid")
    _check_key(secret)
    return secret


def _is_canonical(segment):
    remainder = len(segment) % 4
    if remainder == 0:
        return True
    return remainder != 1 and segment[-1] in _CANONICAL_LAST[remainder]


def _b64decode(segment):
    # The segment has passed _TOKEN and _is_canonical, so this cannot fail.
    return base64.urlsafe_b64decode(segment + _PADDING[len(segment) % 4])


def _decode_object(segment, reason):
    raw = _b64decode(segment)
    try:
        value = _decode_json(raw)
    # NOTE: invalid UTF-8 raises UnicodeDecodeError, a ValueError like
    # msgspec.DecodeError; deep nesting raises RecursionError.
    except (ValueError, RecursionError):
        raise InvalidTokenError(reason) from None
    if type(value) is not dict:
        raise InvalidTokenError(reason)
    # RFC 7515 §4 lets a parser refuse a member named twice or keep the last
    # one; msgspec keeps the last, we refuse (RFC 8725: one meaning per
    # token). A duplicate, however spelt ("role" and "r\u006fle" are one
    # name), leaves the dict with fewer entries than the text has members.
    # Only the top level is checked: nested objects are data, not claims.
    if value and raw.count(b",") + 1 != len(value) and _members(raw) != len(value):
        raise InvalidTokenError(reason)
    return value


# PERF: µs per verify of the bench token (bench/micro/bench_jwt.py, PyJWT
# 37 µs), before -> after this check: 9.43 -> 9.73-9.96 (it runs on the
# header and the payload, there being no header cache here); with a comma
# inside a value, so _members does run: 9.5 -> 11.8. json.loads with an
# object_pairs_hook costs about 7.5 µs per segment, _STRING.sub 3 µs.
def _members(raw):
    """Count the members at the top level of the JSON object ``raw``.

    ``raw`` is valid JSON (msgspec decoded it to a non-empty dict): the
    count is the commas outside strings at depth 1, plus one.

    The caller first compares the count of all commas, plus one: the top
    level has at most that many members and at least ``len(value)``, so
    when those are equal there is no duplicate and this is not called.
    """
    if b"\\" in raw:
        outside = _STRING.sub(b"", raw)
    else:
        # Without escapes every '"' opens or closes a string.
        outside = b"".join(raw.split(b'"')[::2])
    if b"[" not in outside and outside.count(b"{") == 1:
        return outside.count(b",") + 1  # flat: every comma is at the top
    depth = commas = 0
    for char in outside.translate(None, _NOT_STRUCTURE):
        if char == _COMMA:
            commas += depth == 1
        elif char in _OPENERS:
            depth += 1
        else:
            depth -= 1
    return commas + 1


def _is_number(value):
    # msgspec decodes JSON numbers to exactly int or float; bool is excluded.
    return type(value) is int or type(value) is float


def _check_claims(claims, issuer, audience, leeway, now):
    exp = claims.get("exp")
    if not _is_number(exp):
        raise InvalidTokenError("bad_exp")
    if now > exp + leeway:
        raise InvalidTokenError("expired")
    if "nbf" in claims:
        nbf = claims["nbf"]
        if not _is_number(nbf):
            raise InvalidTokenError("bad_nbf")
        if nbf > now + leeway:
            raise InvalidTokenError("not_yet_valid")
    if "iat" in claims:
        iat = claims["iat"]
        if not _is_number(iat):
            raise InvalidTokenError("bad_iat")
        if iat > now + leeway:
            raise InvalidTokenError("issued_in_future")
    iss = claims.get("iss")
    if type(iss) is not str or iss != issuer:
        raise InvalidTokenError("bad_iss")
    if not _audience_matches(claims.get("aud"), audience):
        raise InvalidTokenError("bad_aud")
    if type(claims.get("sub")) is not str:
        raise InvalidTokenError("bad_sub")


def _audience_matches(aud, audience):
    if type(aud) is str:
        return aud == audience
    # A list must hold only strings (RFC 7519 §4.1.3), as PyJWT requires too.
    return (
        type(aud) is list
        and all(type(item) is str for item in aud)
        and audience in aud
    )
