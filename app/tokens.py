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
    return _verify(secret, token, time.time())[0]


def _verify(secret: bytes, token: str, now: float) -> tuple[Principal, float]:
    """The token's principal and the last moment it is valid (``exp`` + leeway)."""
    try:
        claims = fastjwt.verify(token, secret, issuer=ISSUER, audience=AUDIENCE,
                                typ=TOKEN_TYPE, leeway=LEEWAY_SECONDS, now=now)
    except fastjwt.InvalidTokenError as ex:
        raise InvalidToken(str(ex)) from None
    role = claims.get("role")
    subject = claims.get("sub")
    # Only ids this service issued: anything else would reach SQL as a user id.
    if role not in ROLES or type(subject) is not str or not is_uuid(subject):
        raise InvalidToken("bad_claims")
    # verify() guarantees exp is a number (not a bool) with now <= exp + leeway.
    return Principal(subject, role), claims["exp"] + LEEWAY_SECONDS


class Authenticator:
    """:func:`authenticate` that remembers the tokens it accepted, until they expire.

    A client sends the same access token on every request of its 15
    minutes. Only the exact text of a token that passed every check is
    remembered, with the end of its validity (``exp`` plus the leeway),
    which is compared with the clock on every use: a hit is a token the full
    check would accept now. Nothing that failed is kept, so forged or
    malformed tokens cost a full check each and cannot fill the memory.
    Access tokens are not revocable (refresh families are), and a token's
    claims never change, so there is nothing else to expire; the role an
    admin token claims is still checked per request by the caller.
    Bounded: when ``size`` tokens are held, the memory starts over.
    PERF: a hit is ~0.2 us against ~3.6 us to verify (base64, HMAC-SHA256,
    JSON and the claim checks; bench/README.md "GET /v1/users/me: verified
    tokens, pool slots in order").
    """

    __slots__ = ("_secret", "_size", "_clock", "_accepted")

    def __init__(self, secret: bytes, size: int = 4096, clock=time.time):
        self._secret = secret
        self._size = size
        self._clock = clock
        self._accepted: dict[str, tuple[float, Principal]] = {}

    def __call__(self, token: str) -> Principal:
        now = self._clock()
        known = self._accepted.get(token)
        if known is not None:
            if now <= known[0]:
                return known[1]
            del self._accepted[token]
            raise InvalidToken("expired")
        principal, valid_until = _verify(self._secret, token, now)
        if len(self._accepted) >= self._size:
            self._accepted.clear()
        self._accepted[token] = (valid_until, principal)
        return principal


def new_refresh_token() -> tuple[str, bytes]:
    """A fresh opaque refresh token (256 random bits) and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
