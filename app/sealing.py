"""Secrets kept at rest, sealed with ``PEREGRINE_DATA_KEY``.

Fernet from ``cryptography``: authenticated encryption (AES-128-CBC with
HMAC-SHA256) with a versioned token format, so a sealed value cannot be read
or altered without the key. The key is validated at start (app/config.py);
a value sealed under another key fails to open, loudly, rather than
yielding garbage.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


class SealBroken(Exception):
    """The value was not sealed with this key, or was altered."""


class Sealer:
    """Seals and opens with one key; ``cryptography`` is loaded on first use.

    PERF: importing Fernet pulls in ``cryptography`` (≈ 6 MB of worker RSS,
    bench/README.md); only the two-factor routes need it, so a worker that
    serves the catalog never loads it.
    """

    __slots__ = ("_key", "_fernet_instance")

    def __init__(self, key: bytes):
        try:
            valid = len(base64.urlsafe_b64decode(key)) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise ValueError("a data key is 32 bytes in URL-safe base64")
        self._key = key
        self._fernet_instance: Fernet | None = None

    @property
    def _fernet(self) -> Fernet:
        if self._fernet_instance is None:
            from cryptography.fernet import Fernet

            self._fernet_instance = Fernet(self._key)
        return self._fernet_instance

    def __repr__(self) -> str:
        return "Sealer(<key>)"

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, sealed: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise SealBroken() from None
