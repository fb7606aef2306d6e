"""An in-process near cache in front of memcached, kept honest by shared memory.

PERF: a cached ``GET /v1/products/{id}`` spent ~27 % of its worker's CPU on
the memcached ``gets`` round trip (pymemcache's recv and the gevent hub
switch). A hit here is a dict lookup and one read of shared memory: one
worker on CPU0, wrk -c64 on CPU1, production defaults, median of 5 runs of
10 s: 5,167 -> 12,781 req/s (a second session, off vs on: 5,322 -> 10,454;
bench/README.md, "in-process near cache").

The contract (catalog): a committed write is visible to the next read served
by the same node, and to every other node within 1 s, whatever the
interleaving. A "node" is one gunicorn master and the workers forked from it,
so a per-process cache needs two things: a way for a writer to reach its
sibling workers *before it answers*, and a bound on how long another node can
hold an entry.

**The slot table (same node).** This module creates, at import, an anonymous
``MAP_SHARED`` mapping of ``SLOTS`` 32-bit counters. ``gunicorn.conf.py``
imports it in the master, so every worker forked from that master (recycled
and SIGHUP-reloaded ones too) maps the same pages. A key owns slot
``crc32(key) % SLOTS``. A writer, after its commit *and after* the memcached
invalidation of the key, increments the key's slot; only then does it answer.

A reader records ``(slot value, epoch tag, time)`` *before* it reads
memcached or Postgres (:meth:`NearCache.begin`) and stores its value with
that record. A hit needs the slot still at the recorded value, the epoch tag
unchanged and the entry younger than ``ttl``. Why no old value survives:

* a write W whose invalidation finished before the reader's record: the
  reader's read of memcached comes after that delete, and memcached never
  holds a pre-W value after it (fills are ``cas`` against a token read
  before the load, app/readthrough.py); a Postgres load comes after W's
  commit. Either way the value is at least W's;
* a write W whose invalidation finished after the record: W's increment
  comes after it, so the slot has moved past the recorded value before W
  answers, and no worker on this node hits the entry after that;
* increments are *atomic* across processes (a POSIX record lock around the
  read-modify-write). A plain read-modify-write is NOT enough, contrary to
  the first sketch of this design: a process descheduled between its read
  (5) and its store (6) can move a slot *backwards* after others moved it to
  7, and one more increment (6 -> 7) then recreates the value 7 that a
  reader recorded before that last writer's invalidation: an ABA that serves
  the old value on this node. With the lock the slot only grows (mod 2**32),
  so a changed slot never returns to a recorded value; wrapping would need
  2**32 increments of one slot within ``ttl`` (each takes two syscalls under
  a lock: impossible at <= 1e6 per second);
* slots are 4-byte aligned in a page-aligned mapping and read/written
  through a native ``memoryview`` (one aligned load/store; never torn).
  Collisions of keys on a slot only cost extra misses.

**Other nodes.** Their workers do not see this table, so an entry lives at
most ``ttl`` (0.5 s by default, PEREGRINE_NEAR_CACHE_TTL) counted from the
record, which precedes the read. A write W committed at ``c`` deletes its
keys at ``d``, in the first invalidation round that begins after ``c``
(app/coalescing.py): after at most 50 ms of a round in progress and its
own round's replica mark and generation ``incr``, a few milliseconds in
steady state; each memcached call is bounded by the timeout (0.1 s), a
failing node's breaker opens after five failures, and the wait for a new
epoch to be adopted is done outside the rounds. A reader elsewhere that recorded
after ``d`` reads the new value, and one that recorded before it holds its
entry until at most ``d + ttl`` (``c`` + a few ms + 0.5 s, under the
contract's 1 s). When the delete is lost, W moves the memcached node to a new
epoch (app/cache_epochs.py): the entry recorded the epoch its node was read
under, and a hit needs that same epoch now, so every worker drops such
entries when it adopts the new epoch (<= timeout + bump + poll interval +
slack, what the epochs already guarantee for memcached itself), including
entries whose read was in flight under the old epoch.

**Other nodes, heard.** While this node hears every other node's writes
(app/near_listener.py: one worker's LISTEN session whose heartbeats come
back; what they prove is in shared memory beside the slots), an entry
recorded since that session began, under a memcached epoch, may live
``listened_ttl``: each heard write bumps its keys' slots here as a local
write does, a write answers only after its announcement committed, and
that module says why no old value then outlives the answer by more than
``TRUST_WINDOW``. The moment that proof lapses, entries are held to ``ttl``
again, counted from their record, as above.

**Bypassed memcached.** While a key's memcached node is skipped (breaker
open) or bypassed (epoch unknown, or a lost invalidation not yet covered),
the epoch tag is ``None`` and every value comes from Postgres, loaded after
the record: still safe to keep (the first two bullets hold for it). A tag
that changes either way (``None`` -> epoch, epoch -> ``None`` or another
epoch) invalidates the entry: conservative, and the cost is one miss.

Entries are per process, capped at ``max_entries`` and at ``max_bytes`` of
values (the oldest inserted is evicted first): list pages are ~10 KB, and a
stream of one-off queries must not grow a worker by 10,000 of them (a
catalog-miss run took one worker's RSS from 70 to 94 MB with a count cap
alone). The placeholder and "does not exist" are never stored.

Caveat: a gunicorn USR2 binary upgrade runs two masters side by side for a
while, each with its own table; until the old one stops, its workers behave
like another node (they hear each other's announcements, or hold entries
only ``ttl``), and each master's workers elect their own listener. Workers not forked from a
master that imported this module would not share a table at all:
:func:`shared` tells the factory, which then only enables the near cache for
a single-process server.
"""

from __future__ import annotations

import _thread
import fcntl
import math
import mmap
import os
import secrets
import socket
import tempfile
import time
import zlib

SLOTS = 65536  # a power of two; 256 KiB of shared memory
HEARD, SINCE = 0, 1  # indexes of Slots.trust
MAX_ENTRIES = 10_000
MAX_BYTES = 8 * 1024 * 1024
_MASK = 0xFFFFFFFF


class Slots:
    """``SLOTS`` shared 32-bit counters with atomic, cross-process increments."""

    def __init__(self, count: int = SLOTS):
        if count & (count - 1):
            raise ValueError("the slot count must be a power of two")
        self._mask = count - 1
        self._map = mmap.mmap(-1, count * 4)  # anonymous, MAP_SHARED: shared with forks
        self.values = memoryview(self._map).cast("I")  # native: one aligned load/store
        # POSIX record locks belong to a process, not to the inherited fd, so
        # they exclude sibling workers; the thread lock covers threads in one
        # process (no greenlet switch can happen while either is held).
        self._lockfile = tempfile.TemporaryFile(prefix="peregrine-slots-")
        self._thread_lock = _thread.allocate_lock()
        self.created_by = os.getpid()
        # What the node's listener (app/near_listener.py: one worker of the
        # node at a time) proves, shared like the slots: HEARD, when the
        # newest heartbeat heard back was sent, and SINCE, when its LISTEN
        # session began (time.monotonic(): one clock for the whole host).
        # The listener writes SINCE before HEARD; get() reads HEARD first.
        self._trust_map = mmap.mmap(-1, mmap.PAGESIZE)
        self.trust = memoryview(self._trust_map).cast("d")
        self.trust[HEARD], self.trust[SINCE] = -math.inf, math.inf
        #: Held (a POSIX record lock: per process, gone with it) by the one
        #: worker of this node that listens.
        self.listener_lock = tempfile.TemporaryFile(prefix="peregrine-listener-")
        #: Names this table (this node) in the invalidations it announces to
        #: other nodes (app/near_listener.py), so that its own workers, which
        #: bumped the slots already, skip them.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def index(self, key: str) -> int:
        return zlib.crc32(key.encode()) & self._mask

    def bump(self, indexes) -> None:
        """Increment each slot once, atomically across processes."""
        fd = self._lockfile.fileno()
        with self._thread_lock:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                values = self.values
                for i in set(indexes):
                    values[i] = (values[i] + 1) & _MASK
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)


TABLE = Slots()  # created at import: in the gunicorn master when gunicorn.conf.py runs


def shared() -> bool:
    """True when this process inherited the table from a parent (a forked worker)."""
    return os.getpid() != TABLE.created_by


def _no_tag(key: str):
    return None


#: How recent the newest heartbeat heard back must be (counted from when it
#: was sent) for entries to live past ``ttl``: the cross-node bound is then
#: the announcement's own delay plus this (app/near_listener.py).
TRUST_WINDOW = 0.4


class NearCache:
    """Per-process entries ``key -> (value, slot, version, tag, recorded_at)``."""

    def __init__(self, ttl: float, *, slots: Slots = TABLE, tag=_no_tag,
                 max_entries: int = MAX_ENTRIES, clock=time.monotonic,
                 max_bytes: int = MAX_BYTES, listened_ttl: float = 0.0):
        self.ttl = ttl
        # How long an entry may live while this node hears other nodes'
        # invalidations (app/near_listener.py sets heard_at and
        # listening_since, in the slots' shared memory; until it does, and
        # whenever it stops hearing, only ``ttl`` holds).
        self.listened_ttl = max(ttl, listened_ttl)
        self.slots = slots
        self._values = slots.values
        self._trust = slots.trust
        self._tag = tag  # key -> what the key's memcached node is read under now
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0  # the length of every value held
        self._clock = clock
        self._entries: dict[str, tuple] = {}

    @property
    def listening_since(self) -> float:
        """When the node's current LISTEN session began: only entries recorded
        since may live past ``ttl`` (an announcement made while nobody listened
        was never heard)."""
        return self._trust[SINCE]

    @listening_since.setter
    def listening_since(self, at: float) -> None:
        self._trust[SINCE] = at

    @property
    def heard_at(self) -> float:
        """When the newest heartbeat heard back on that session was sent: every
        announcement committed before then has been heard and bumped."""
        return self._trust[HEARD]

    @heard_at.setter
    def heard_at(self, at: float) -> None:
        self._trust[HEARD] = at

    def get(self, key: str):
        """The value, or None when there is no valid entry."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, slot, version, tag, recorded_at = entry
        if self._values[slot] == version and self._tag(key) == tag:
            now = self._clock()
            age = now - recorded_at
            trust = self._trust
            # Past the ttl only with an epoch tag: a write whose announcement
            # is late retires the epoch, which a None tag would not notice.
            if age < self.ttl or (age < self.listened_ttl and tag is not None
                                  and now - trust[HEARD] < TRUST_WINDOW  # before SINCE
                                  and recorded_at >= trust[SINCE]):
                return value
        self._drop(key)
        return None

    def begin(self, key: str) -> tuple:
        """Record the slot, the tag and the time; call BEFORE reading memcached or Postgres."""
        slot = self.slots.index(key)
        return slot, self._values[slot], self._tag(key), self._clock()

    def put(self, key: str, value: bytes, ticket: tuple) -> None:
        """Keep ``value`` (read after :meth:`begin` gave ``ticket``)."""
        slot, version, tag, recorded_at = ticket
        if self._values[slot] != version or self._clock() - recorded_at >= self.ttl:
            return  # a write moved the slot meanwhile, or the read took the whole ttl
        entries = self._entries
        self._drop(key)
        size = len(value)
        if size > self._max_bytes:
            return
        while entries and (len(entries) >= self._max or self._bytes + size > self._max_bytes):
            self._drop(next(iter(entries)))  # the oldest inserted
        entries[key] = (value, slot, version, tag, recorded_at)
        self._bytes += size

    def bump(self, keys) -> None:
        """After the commit and the memcached invalidation: fail every worker's entries."""
        self.slots.bump([self.slots.index(k) for k in keys])
        for k in keys:
            self._drop(k)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])

    def __len__(self) -> int:
        return len(self._entries)
