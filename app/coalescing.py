"""Group invalidation: one round of work for every caller that asked before it began.

The cache invalidation after a catalog commit (app/catalog.py) is the same
few round trips whatever it covers: the WAL position and the replica mark
(app/replicas.py), the list generation's ``incr``, then the deletes and the
near-cache bump. Each of those is valid for every commit that finished
before it *started* (a WAL position read after two commits is past both; an
``incr`` after both moves the lists past both; a delete after both removes
whatever either left). So concurrent writers can share one round, as a
database's group commit shares one fsync, provided each writer waits for a
round that began after it asked.

PERF: orders on 64 connections, one worker: ~26 orders per round (265 WAL
position queries for 6,806 orders), worker CPU per order 1,335 -> 784 us,
475 -> 623 orders/s (bench/README.md, "Orders: group invalidation").

:meth:`Coalescer.submit` adds the caller's keys to the *next* round and
returns when that round is done (raising :class:`InvalidationFailed`, one
per caller, if it raised). No round is running: the caller runs it, in its
own greenlet, at once (a lone writer pays nothing extra). One is running:
the caller's keys wait for it to end, and the round after it is started
then by a greenlet of its own, so a waiter killed meanwhile (a timeout) cannot
strand the keys of the others, or its own; a runner killed mid-round has its
whole round done again by the next one, which its callers wait for. A round
still running ``PATIENCE`` (50 ms) after it began is slow (memcached calls
timing out): a caller then starts the next round at once, beside it, so no
write's deletes wait more than that for another's. A
worker's exit lets the rounds in progress finish (:meth:`Coalescer.settle`,
from ``Deps.close`` in gunicorn's ``worker_exit``).

Greenlets of one thread, as the worker runs them; not for OS threads.
"""

from __future__ import annotations

import time

import gevent
import gevent.event

from app.event_wait import wait_for


class InvalidationFailed(RuntimeError):
    """The round a caller waited for raised (its ``__cause__``)."""


#: How long a caller waits for the round in progress (counted from when it
#: began) before it starts its own beside it. Rounds take milliseconds; one
#: held up by a failing memcached node (a 0.1 s timeout per call until the
#: breaker opens) must not hold back the deletes of writes that came after
#: it, which other nodes' near caches are waiting for (app/nearcache.py).
PATIENCE = 0.05


class _Round:
    __slots__ = ("asked", "began", "keys", "lists", "done", "error", "result", "carried_to")

    def __init__(self):
        self.asked = False  # someone waits for this round (it may have no keys)
        self.began = 0.0  # time.monotonic() when it began; 0.0 until then
        self.keys: dict[str, None] = {}  # insertion-ordered and deduplicated
        self.lists = False
        self.done = gevent.event.Event()
        self.error: Exception | None = None
        self.result = None  # what the work returned
        #: The round that took this one's work over when this one was interrupted.
        self.carried_to: _Round | None = None


class Coalescer:
    """Runs ``work(keys, lists)`` once for every batch of :meth:`submit` calls.

    ``metrics`` counts ``<name>.rounds`` per round run and ``<name>.joined``
    per caller whose keys went into a round another started, and times each
    round's work as ``<name>.round_ms`` (what each of its writers waited for,
    on top of the round in progress when it asked).
    """

    def __init__(self, work, metrics, name: str, *, patience: float = PATIENCE):
        self._work = work
        self._metrics = metrics
        self._rounds_metric = f"{name}.rounds"
        self._joined_metric = f"{name}.joined"
        self._duration_metric = f"{name}.round_ms"
        self.patience = patience
        self._next = _Round()
        #: The round begun last, while it runs.
        self._latest: _Round | None = None
        #: Every round running (more than one when a slow one has company).
        self._running: set[_Round] = set()

    def submit(self, keys, lists: bool):
        """Have ``keys`` (and the lists, if ``lists``) invalidated by a round begun now or later.

        Returns what that round's work returned.
        """
        mine = self._next
        mine.asked = True
        mine.keys.update(dict.fromkeys(keys))
        mine.lists = mine.lists or lists
        latest = self._latest
        if latest is None:
            self._run()  # takes ``mine``: no round is running
        else:
            self._metrics.incr(self._joined_metric)
            left = latest.began + self.patience - time.monotonic()
            if not (left > 0 and wait_for(latest.done, left)) and not mine.began:
                self._run()  # the round in progress is slow: ours begins beside it
            # else: the round that ended has started ours in a greenlet of its own
        while True:
            # Not mine.done.wait(): a runner waits here on the round it has
            # just set done (app/event_wait.py says why that can hang).
            wait_for(mine.done)
            if mine.carried_to is None:
                break
            mine = mine.carried_to
        if mine.error is not None:
            # One exception per caller: raising the round's own object in
            # every greenlet would grow its traceback with each of them.
            raise InvalidationFailed("the cache invalidation failed") from mine.error
        return mine.result

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the rounds running or asked for; True when none is left.

        For a worker's exit: a round started by a greenlet of its own must not
        be cut short by the process ending.
        """
        deadline = time.monotonic() + timeout
        while self._running or self._next.asked:
            waiting_for = next(iter(self._running)) if self._running else self._next
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait_for(waiting_for.done, left)
        return True

    def _run(self) -> None:
        current = self._next
        if not current.asked:
            return  # a greenlet started for a round someone else ran meanwhile
        self._metrics.incr(self._rounds_metric)
        self._next = _Round()  # who asks from now on waits for a later round
        current.began = time.monotonic()
        self._latest = current
        self._running.add(current)
        try:
            current.result = self._work(list(current.keys), current.lists)
        except Exception as ex:  # noqa: BLE001 - every caller of the round raises it
            current.error = ex
        except BaseException:
            # The runner was killed mid-round (GreenletExit, a timeout): the
            # commits are made, so the whole round is done again by the next
            # one, and its callers wait for that.
            pending = self._next
            pending.asked = True
            pending.keys.update(current.keys)
            pending.lists = pending.lists or current.lists
            current.carried_to = pending
            raise
        finally:
            took = time.monotonic() - current.began
            self._running.discard(current)
            if self._latest is current:
                self._latest = None
            if self._next.asked:
                gevent.spawn(self._run)  # the callers who came meanwhile
            current.done.set()
        # After done.set(): a metrics flush may switch greenlets or raise, and
        # must not keep the round's writers waiting.
        self._metrics.timing(self._duration_metric, took * 1000)
