"""Types for the compiled twin; ``hotpath._jwt_py`` is the spec."""

from collections.abc import Mapping
from typing import Any, Final

from hotpath._jwt_errors import InvalidTokenError as InvalidTokenError

__all__ = ("InvalidTokenError", "verify")

#: Longest token accepted, in characters; checked before anything else.
MAX_TOKEN_LENGTH: Final[int]
#: Shortest HMAC key accepted (RFC 7518 §3.2: at least the hash size).
MIN_KEY_LENGTH: Final[int]

def verify(
    token: str | bytes,
    key: bytes | Mapping[str, bytes],
    *,
    issuer: str,
    audience: str,
    typ: str,
    leeway: float = 30,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify an HS256 JWT and return its claims.

    Args:
        token: The compact JWS, at most 4096 characters of strict
            base64url (no ``=`` padding) in three segments.
        key: The HMAC key (at least 32 bytes), or a table of keys by
            ``kid``; then the header must name one, and the ``kid`` is only
            looked up in the table.
        issuer: Required exact value of ``iss``.
        audience: Required value of ``aud``: equal to it, or, when ``aud``
            is a list of strings, one of its items.
        typ: Required exact value of the header ``typ`` (``"at+jwt"``).
        leeway: Seconds of clock skew allowed on ``exp``, ``nbf``, ``iat``.
        now: Unix time to check against; default ``time.time()``.

    Returns:
        The claims. ``alg`` was exactly ``HS256``; ``exp`` is a number with
        ``now <= exp + leeway``; ``nbf`` and ``iat``, when present, are
        numbers ``<= now + leeway``; ``iss`` and ``sub`` are strings.

    Raises:
        InvalidTokenError: The token must be refused; ``reason`` says why.
        TypeError: ``token`` or ``key`` has the wrong type.
        ValueError: A key is shorter than 32 bytes (a configuration error).
    """
