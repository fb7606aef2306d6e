"""Access tokens (HS256 JWTs) and refresh tokens (opaque, stored hashed).

Access tokens are issued with PyJWT and verified by ``hotpath.jwt``, the
strict verifier with a compiled twin. PyJWT is imported on the first token
issued, not with the app: it imports ``cryptography`` for algorithms never
used here, and a worker that only serves reads should not carry it.

Access tokens live 15 minutes. The role they carry is a hint: a token that
claims ``admin`` is checked against the account's current role on every
request (app/auth.py), so a demotion takes effect at once; a promotion
reaches the token at the next refresh.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from app.ids import is_uuid
from hotpath import jwt as fastjwt

ISSUER = "peregrine"
AUDIENCE = "peregrine:access"
TOKEN_TYPE = "at+jwt"  # RFC 9068: an access token cannot pass as any other JWT
ACCESS_TTL_SECONDS = 15 * 60
REFRESH_LIFETIME = timedelta(days=30)
LEEWAY_SECONDS = 30
ROLES = ("user", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the access token says."""

    id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class InvalidToken(Exception):
    """The access token must not be trusted (reason is for logs only)."""

    @property
    def expired(self) -> bool:
        """Only its lifetime is over: a refresh, not a new login, fixes it."""
        return str(self) == "expired"


def issue_access_token(secret: bytes, user_id: str, role: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user_id,
        "role": role,
        "iat": issued,
        "exp": issued + ACCESS_TTL_SECONDS,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": os.urandom(16).hex(),
    }
    # PERF: a lazy import keeps PyJWT and the ``cryptography`` it loads out of
    # workers that never issue a token (≈ 2.5 MB of RSS, bench/README.md).
    import jwt as pyjwt

    return pyjwt.encode(claims, secret, algorithm="HS256", headers={"typ": TOKEN_TYPE})


def authenticate(secret: bytes, token: str) -> Principal:
    """Verify an access token and return its principal, or raise InvalidToken."""
    try:
        claims = fastjwt.verify(token, secret, issuer=ISSUER, audience=AUDIENCE,
                                typ=TOKEN_TYPE, leeway=LEEWAY_SECONDS)
    except fastjwt.InvalidTokenError as ex:
        raise InvalidToken(str(ex)) from None
    role = claims.get("role")
    subject = claims.get("sub")
    # Only ids this service issued: anything else would reach SQL as a user id.
    if role not in ROLES or type(subject) is not str or not is_uuid(subject):
        raise InvalidToken("bad_claims")
    return Principal(subject, role)


def new_refresh_token() -> tuple[str, bytes]:
    """A fresh opaque refresh token (256 random bits) and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
