"""Secrets kept at rest, sealed with ``PEREGRINE_DATA_KEY``.

Fernet from ``cryptography``: authenticated encryption (AES-128-CBC with
HMAC-SHA256) with a versioned token format, so a sealed value cannot be read
or altered without the key. The key is validated at start (app/config.py);
a value sealed under another key fails to open, loudly, rather than
yielding garbage.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class SealBroken(Exception):
    """The value was not sealed with this key, or was altered."""


class Sealer:
    __slots__ = ("_fernet",)

    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "Sealer(<key>)"

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise SealBroken() from None
