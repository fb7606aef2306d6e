"""Hear other nodes' catalog invalidations, so near entries may outlive the ttl.

PERF: with only the ttl (0.5 s, app/nearcache.py), each of the 1,000 product
ids of the cached-read benchmark went back to memcached twice a second: a
quarter of the reads paid the memcached round trip. While this node hears
every other node's writes, an entry lives ``listened_ttl``
(PEREGRINE_NEAR_CACHE_LISTENED_TTL, 3 s by default): +10-20 % on that read,
bench/README.md, "Near entries that hear other nodes".

**Announcing.** A write's invalidation round (app/catalog.py), after its
memcached invalidation and its slot bump on this node, hands the keys to
the worker's :class:`Announcer`, which sends them on the ``peregrine_near``
channel (``pg_notify``) on a session of its own: one small transaction for
whatever keys are waiting, so concurrent writers share it. The round
returns, and the write answers, only once that transaction has committed.
The payload begins with the announcing node's name, so its own workers,
whose slots already moved, skip it. Every node announces, whatever its own
listened ttl.

**Listening.** One worker of each node (:class:`Listener`) holds a
Postgres session that LISTENs on that channel and on a heartbeat channel
only it uses, and notifies the heartbeat channel every ``interval`` (0.1 s).
A heard key bumps its slot on this node (NearCache.bump), failing every
worker's entry for it and every read of it in flight, exactly as a local
write does; what the heartbeats prove is kept in the node's shared memory
beside the slots, for every worker.

**Why no old value lives past the bound.** Postgres delivers notifications
to a session in commit order, whatever their channel. So when a heartbeat
sent at ``s`` (the time is taken before it is sent) comes back, every
announcement committed before ``s`` has been heard, and its bump done, in
order, before the heartbeat is processed. An entry lives past ``ttl`` only
if (NearCache.get):

* it was recorded after this session's LISTEN took effect (an announcement
  made while nobody listened was never heard; one committed before LISTEN
  was made after its memcached deletes, so a read recorded after it is
  fresh: the near cache's own argument),
* the newest heartbeat heard back was sent less than ``TRUST_WINDOW``
  (0.4 s) ago, and
* it was read under a memcached epoch (not while its node was bypassed).

Take a write W committed at ``c`` whose round finished its memcached
deletes at ``d`` and committed its announcement at ``m > d``, before W
answered at ``a``. A reader on another node that recorded after the bump
W's announcement caused reads memcached after ``d``: fresh. One that
recorded before it holds an old value only until that bump, which happens
before any heartbeat sent after ``m`` is processed; so at a time ``t`` when
it is still served past the ttl, the heartbeat trusted was sent before
``m``, and ``t < m + TRUST_WINDOW < a + 0.4 s``; from the commit, ``c`` +
the round (a few milliseconds in steady state, bounded by the memcached
timeouts as app/nearcache.py says) + the announcement + 0.4 s. Nothing the
writer does after answering matters: its process may be killed then.
Otherwise the entry is held to the plain ttl, whose bound app/nearcache.py
gives. A session that fails, or stops answering (a frozen backend, a network
partition), stops its heartbeats: within 0.4 s every entry is back to the
ttl, a new session trusts only entries recorded after its own LISTEN, and
a session with no heartbeat heard back for ``SEND_TIMEOUT`` is replaced.

**A late announcement.** The writer's announcing session can stall (a
frozen backend, a network flap) or fail and reconnect, while the readers'
own heartbeats keep coming back. So a write waits at most
``ANNOUNCE_DEADLINE`` (0.2 s) for its announcement; then its keys are
treated as a lost invalidation: the writer retires their memcached nodes'
epochs (app/cache_epochs.py) and answers once every process has had a poll
interval to adopt the new epoch, as for a lost delete. An entry records
the epoch it was read under and is valid only while that epoch is current
(app/nearcache.py), so no process serves it after that; the bound is the
one epochs give a lost delete. If that bump fails too (Postgres unreachable
for the writer), the window is the one app/cache_epochs.py names. A send
that takes ``SEND_TIMEOUT`` abandons its session, so one frozen backend
costs the writes of about a second, not every later one.

Every node must run a release that announces before any node listens: a
node of an older release announces nothing, and a node that listens would
hold that node's writes' old values up to ``listened_ttl``. So a rolling
upgrade from such a release runs with the listened ttl at 0 (announcing,
not listening) until every node is upgraded (deploy/ansible/README.md).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import secrets
import time

import gevent
import gevent.event
from gevent.socket import wait_read

from app.event_wait import wait_for
from app.metrics import NULL_METRICS
from app.queries import near as q

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 0.1
#: How long a write waits for its keys to be announced before their memcached
#: nodes' epochs are retired instead (Announcer).
ANNOUNCE_DEADLINE = 0.2
#: A send (announcement or heartbeat) taking longer abandons its session: a
#: pg_notify transaction with asynchronous commit takes about a millisecond.
SEND_TIMEOUT = 1.0
_RECONNECT_MAX = 2.0
#: How often a worker that does not listen tries to take over the node's listener.
LEAD_POLL = 0.2


class _SendTimeout(Exception):
    """An announcement or heartbeat took longer than its session is trusted to."""


class Announcer:
    """Sends the keys writes invalidated, on a session of its own; writes wait for it.

    ``announce`` returns once a committed ``pg_notify`` transaction carries
    the keys: concurrent writers' keys share one (the worker's rounds hand
    theirs in while one is in flight, and the next takes them all). A
    dedicated session, not the pool: under load the pool's queue (up to its
    1 s timeout) would delay every write.

    A write does not answer before its keys are announced, so no later event
    in the writer (its process killed, its loop starved, its host cut off
    from Postgres) can leave another node's entry trusted past the bound.
    Keys not announced within ``deadline`` (the session stalled, Postgres is
    slow for it, it failed and is reconnecting) are given to ``lost``: the
    factory passes the cache's lost-invalidation path, which retires their
    memcached nodes' epochs (app/cache_epochs.py), and ``announce`` returns
    the time the writer must wait for, as a lost delete does. They are still
    announced when the session recovers. A send that takes longer than
    ``send_timeout`` abandons its session and reconnects: a frozen backend
    would otherwise hold every later write to the deadline.
    """

    def __init__(self, pool, node: str, *, lost=None, metrics=NULL_METRICS,
                 deadline: float = ANNOUNCE_DEADLINE, send_timeout: float = SEND_TIMEOUT,
                 clock=time.monotonic):
        self._pool = pool
        self._node = node
        self._lost = lost  # keys -> when to answer; None: nothing to fall back on (tools)
        self._metrics = metrics
        self._deadline = deadline
        self._send_timeout = send_timeout
        self._clock = clock
        self._pending: dict[str, None] = {}  # ordered, without duplicates
        self._handed = 0  # announce() calls so far
        self._sent = 0  # ...whose keys a committed announcement carried
        self._progress = gevent.event.Event()  # set (and replaced) when _sent moves
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._conn = None
        self._late = False  # the last announce() gave up: warn once per spell

    def announce(self, keys: list[str]) -> float:
        """After a write's memcached invalidation and slot bump: tell the other nodes.

        Returns 0.0 once the keys are announced, or, when they were handed to
        ``lost`` instead, the ``time.monotonic()`` the writer must wait for
        before it answers.
        """
        for k in keys:
            self._pending[k] = None
        self._handed += 1
        call = self._handed
        self._wake.set()
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        give_up_at = self._clock() + self._deadline
        while self._sent < call:
            progress = self._progress  # set by the sender after it moves _sent
            remaining = give_up_at - self._clock()
            if remaining <= 0 or not wait_for(progress, remaining):
                if self._sent >= call:
                    break
                return self._give_up(keys)
        self._late = False
        return 0.0

    def close(self) -> None:
        """Stop sending (after the rounds: every caller has had its answer)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1)
        self._disconnect()

    def _give_up(self, keys: list[str]) -> float:
        self._metrics.incr("cache.near.announce_late")
        if not self._late:
            log.warning("catalog invalidations not announced to other nodes within %.1f s: "
                        "retiring their cache node's epoch instead", self._deadline)
        self._late = True
        if self._lost is None:
            return 0.0
        try:
            return self._lost(keys)
        except Exception:  # the epochs retry on their own
            log.exception("could not retire the cache epoch for unannounced invalidations")
            return 0.0

    def _run(self) -> None:
        delay = HEARTBEAT_INTERVAL
        failing = False
        while True:
            wait_for(self._wake)
            self._wake.clear()
            if not self._pending:
                continue
            # Taken out now: a key announced again while this one is in flight
            # (a later write, after its own deletes) must go out again, after.
            keys, self._pending = list(self._pending), {}
            covers = self._handed  # every call so far has its keys here or already sent
            try:
                with gevent.Timeout(self._send_timeout, _SendTimeout):
                    conn = self._conn
                    if conn is None:
                        conn = self._conn = self._pool.connect_dedicated(
                            f"peregrine-announce-{os.getpid()}")
                    with conn.cursor() as cur:
                        q.announce(cur, self._node, keys)
            except Exception as ex:  # noqa: BLE001 - keep the keys, reconnect, retry
                self._metrics.incr("cache.near.announce_error")
                if not failing:
                    log.warning("cannot announce catalog invalidations to other nodes (%s): "
                                "reconnecting; writes meanwhile retire their cache node's "
                                "epoch", type(ex).__name__)
                failing = True
                self._pending = {**dict.fromkeys(keys), **self._pending}
                self._disconnect()
                self._wake.set()
                gevent.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX)
                continue
            failing, delay = False, HEARTBEAT_INTERVAL
            self._sent = covers
            progress, self._progress = self._progress, gevent.event.Event()
            progress.set()
            self._metrics.incr("cache.near.announced")
            if self._pending:
                self._wake.set()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)


class Listener:
    """The node's LISTEN session, held by one worker at a time.

    Every worker runs one; the worker holding the node's listener lock (a
    POSIX record lock on a file the master opened, app/nearcache.py: freed
    when its process exits, however it exits) listens, and the others try
    for the lock every ``LEAD_POLL`` seconds. The slots it bumps and the
    trust it proves (``heard_at``, ``listening_since``) are in the node's
    shared memory, so they count for every worker. PERF: one listener per
    node, not per worker, because Postgres wakes every listening session
    of the database for every NOTIFY (async.c, SignalBackends): heartbeats
    from a session per worker cost sessions² wake-ups. 32 heartbeating
    sessions on the bench's Postgres took orders from ~536 to 363-437/s.

    The leader writes ``listening_since`` before ``heard_at``, and
    NearCache.get reads ``heard_at`` first: a reader that sees a new
    session's heartbeat sees its ``listening_since`` too (x86-64 keeps
    stores, and loads, in order). A reader that sees an older heartbeat
    with a newer session's ``listening_since`` is safe as well: that
    heartbeat's bumps are in the shared slots, so what it proves still holds.
    """

    def __init__(self, near, pool, *, metrics=NULL_METRICS,
                 interval: float = HEARTBEAT_INTERVAL):
        self._near = near
        self._pool = pool
        self._metrics = metrics
        self._interval = interval
        self._clock = near._clock
        self._node = near.slots.node
        self._lock_fd = near.slots.listener_lock.fileno()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = gevent.event.Event()
        self._conn = None
        self.leading = False  # this worker is the node's listener
        self._heard_here = -math.inf  # the newest heartbeat heard on the current session
        self.backend_pid: int | None = None  # of the current session (tests freeze it)

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def close(self) -> None:
        self._stopping.set()
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1)
        self._disconnect()
        if self.leading:
            self._untrust()
            self.leading = False
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)  # a sibling takes over

    # -- internals ----------------------------------------------------------

    def _lead(self) -> bool:
        """Wait until this worker holds the node's listener lock; False: closing."""
        while not self._stopping.is_set():
            try:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a sibling listens
                wait_for(self._stopping, LEAD_POLL)
                continue
            self.leading = True
            return True
        return False

    def _run(self) -> None:
        if not self._lead():
            return
        delay = self._interval
        failing = False
        while not self._stopping.is_set():
            started = self._clock()
            try:
                self._session()
            except Exception as ex:  # noqa: BLE001 - fall back to the ttl, reconnect
                self._metrics.incr("cache.near.listen_error")
                if not failing:
                    log.warning("not hearing other nodes' catalog invalidations (%s): near "
                                "entries live at most the ttl until a new session listens",
                                type(ex).__name__)
                failing = True
            finally:
                self._untrust()
                self._disconnect()
            if self._clock() - started > 10 * self._interval:
                delay = self._interval  # it had worked for a while
            if wait_for(self._stopping, delay):
                return
            delay = min(delay * 2, _RECONNECT_MAX)

    def _session(self) -> None:
        conn = self._conn = self._pool.connect_dedicated(f"peregrine-near-{os.getpid()}")
        self.backend_pid = conn.info.backend_pid
        # A channel of this session's own: a heartbeat an earlier session
        # committed late (its backend was frozen) cannot pass for one of these.
        beats = f"peregrine_near_hb_{secrets.token_hex(6)}"
        sent: dict[int, float] = {}  # heartbeat -> when it was sent
        seq = 0
        with conn.cursor() as cur:
            q.unasync(cur)
            q.listen(cur, q.CHANNEL, beats)
            self._near.listening_since = self._heard_here = self._clock()
            next_beat = 0.0
            while True:
                now = self._clock()
                if now - self._heard_here > SEND_TIMEOUT:
                    # A session that stopped answering (a frozen backend's kernel
                    # still keeps TCP alive): trust lapsed long ago; start afresh.
                    raise _SendTimeout("no heartbeat heard back")
                if now >= next_beat:
                    seq += 1
                    sent[seq] = now
                    with gevent.Timeout(SEND_TIMEOUT, _SendTimeout):
                        q.heartbeat(cur, beats, seq)
                    next_beat = now + self._interval
                    self._heard(conn, beats, sent)
                try:
                    wait_read(conn.fileno(), timeout=max(0.0, next_beat - self._clock()))
                except TimeoutError:
                    continue
                conn.poll()
                self._heard(conn, beats, sent)

    def _heard(self, conn, beats: str, sent: dict[int, float]) -> None:
        """Apply what arrived, in order: bumps first, then what a heartbeat proves."""
        notifies = conn.notifies
        while notifies:
            notify = notifies.pop(0)
            if notify.channel == q.CHANNEL:
                node, keys = q.parse(notify.payload)
                if node != self._node and keys:
                    self._near.bump(keys)
                    self._metrics.incr("cache.near.heard")
            elif notify.channel == beats:
                beat = int(notify.payload)
                at = sent.get(beat)
                for old in [b for b in sent if b <= beat]:
                    del sent[old]
                if at is not None:
                    self._heard_here = max(self._heard_here, at)
                    if at > self._near.heard_at:
                        self._near.heard_at = at

    def _untrust(self) -> None:
        self._near.heard_at = -math.inf
        self._near.listening_since = math.inf

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self.backend_pid = None
        if conn is not None:
            _close_quietly(conn)


def _close_quietly(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken session
        pass

