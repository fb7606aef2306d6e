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
whole round done again by the next one, which its callers wait for. A
worker's exit lets the rounds in progress finish (:meth:`Coalescer.settle`,
from ``Deps.close`` in gunicorn's ``worker_exit``).

Greenlets of one thread, as the worker runs them; not for OS threads.
"""

from __future__ import annotations

import time

import gevent
import gevent.event


class InvalidationFailed(RuntimeError):
    """The round a caller waited for raised (its ``__cause__``)."""


class _Round:
    __slots__ = ("asked", "keys", "lists", "done", "error", "result", "carried_to")

    def __init__(self):
        self.asked = False  # someone waits for this round (it may have no keys)
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
    per caller whose keys went into a round another started.
    """

    def __init__(self, work, metrics, name: str):
        self._work = work
        self._metrics = metrics
        self._rounds_metric = f"{name}.rounds"
        self._joined_metric = f"{name}.joined"
        self._next = _Round()
        #: The round in progress, or the next one once it is promised a runner.
        self._busy: _Round | None = None

    def submit(self, keys, lists: bool):
        """Have ``keys`` (and the lists, if ``lists``) invalidated by a round begun now or later.

        Returns what that round's work returned.
        """
        mine = self._next
        mine.asked = True
        mine.keys.update(dict.fromkeys(keys))
        mine.lists = mine.lists or lists
        if self._busy is None:
            self._run()  # takes ``mine``: nothing else was waiting
        else:
            self._metrics.incr(self._joined_metric)
        while True:
            mine.done.wait()
            if mine.carried_to is None:
                break
            mine = mine.carried_to
        if mine.error is not None:
            # One exception per caller: raising the round's own object in
            # every greenlet would grow its traceback with each of them.
            raise InvalidationFailed("the cache invalidation failed") from mine.error
        return mine.result

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the rounds running or promised; True when none is left.

        For a worker's exit: a round started by a greenlet of its own must not
        be cut short by the process ending.
        """
        deadline = time.monotonic() + timeout
        while self._busy is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._busy.done.wait(left)
        return True

    def _run(self) -> None:
        current = self._next
        self._next = _Round()  # who asks from now on waits for a later round
        self._busy = current
        self._metrics.incr(self._rounds_metric)
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
            pending = self._next
            if pending.asked:
                self._busy = pending  # promised: no caller starts it meanwhile
                gevent.spawn(self._run)
            else:
                self._busy = None
            current.done.set()
