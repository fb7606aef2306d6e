"""Strong ETags of cached response bodies, computed once per body object.

PERF: a near-cache hit hands back the very bytes object it holds, so its
digest can be remembered with it: blake2b over a ~10 KB list page costs
about as much as the rest of the hit (~10 us here), a lookup by identity
well under 1 us. Entries keep their body alive, so an ``id()`` is never
reused while it is a key here. Bounded by count and by bytes (oldest out
first): bodies the near cache holds cost nothing extra, one-off bodies
(memcached hits, misses) at most ``MAX_BYTES``.
"""

from __future__ import annotations

from app.catalog import etag

MAX_ENTRIES = 4096
MAX_BYTES = 2 * 1024 * 1024


class Etags:
    """``body object -> its ETag``, for the bodies seen last."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._known: dict[int, tuple[bytes, str]] = {}
        self.held = 0  # bytes of the bodies kept

    def of(self, body: bytes) -> str:
        """``etag(body)``, remembered for this exact object."""
        known = self._known
        entry = known.get(id(body))
        if entry is not None and entry[0] is body:
            return entry[1]
        tag = etag(body)
        size = len(body)
        if size <= self._max_bytes:
            while known and (len(known) >= self._max_entries
                             or self.held + size > self._max_bytes):
                self.held -= len(known.pop(next(iter(known)))[0])
            known[id(body)] = (body, tag)
            self.held += size
        return tag

    def __len__(self) -> int:
        return len(self._known)


#: One per worker process (greenlets only switch on I/O: no lock needed).
etag_of = Etags().of
