"""Password hashing with argon2id, off the event loop.

Hashing takes tens of milliseconds of CPU. Run inline, it would stall every
other request on the worker, so it runs in a small native thread pool
(argon2's C code releases the GIL). The pool is bounded: hashes in flight
per worker never exceed ``threads``, which caps both CPU and memory (each
hash holds ``memory_cost`` KiB).
"""

from __future__ import annotations

import argon2
import gevent.threadpool

# OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane (~60 ms here).
HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

# Verified when the email is unknown, so that answer takes as long as a
# wrong password and does not reveal whether an account exists.
_DUMMY_HASH = HASHER.hash("peregrine-no-such-user")


def hash_now(password: str) -> str:
    """Hash in the calling thread (CLI and seeding only)."""
    return HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


class Passwords:
    """Hash and verify in a bounded native thread pool."""

    def __init__(self, threads: int = 2):
        self._pool = gevent.threadpool.ThreadPool(threads)

    def hash(self, password: str) -> str:
        return self._pool.apply(HASHER.hash, (password,))

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Check ``password``; a None hash (unknown user) costs the same and fails."""
        if password_hash is None:
            self._pool.apply(_verify, (_DUMMY_HASH, password))
            return False
        return self._pool.apply(_verify, (password_hash, password))

    def close(self) -> None:
        self._pool.kill()
