"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Each attempt carries ``webhook-id`` (the event id, the same on every
attempt), ``webhook-timestamp`` (Unix seconds, when the attempt was signed)
and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of
``"{id}.{timestamp}.{body}"`` for every secret in use, separated by spaces,
so that during a rotation receivers holding either secret can verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

PREFIX = "whsec_"
#: The specification asks for 24 to 64 random bytes.
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_use: list[str], message_id: str, body: bytes,
            timestamp: int | None = None) -> dict[str, str]:
    """The ``webhook-*`` headers for one attempt, signed with every secret in use."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, message_id, timestamp, body)
                                      for secret in secrets_in_use),
    }
