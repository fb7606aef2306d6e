"""Per-node cache epochs: what makes a lost invalidation harmless.

A write commits, then deletes the cache keys it changed. When a delete cannot
reach the memcached node holding the key (it timed out because the node is
stopped or overloaded rather than dead, or it was skipped because that node's
breaker is open), the old value is still there when the node answers again,
and every process would serve it. Retrying the delete later does not help: a
process can die first, and nothing says when the node is back.

So every key is stored under the epoch of its node, ``e<epoch>:<key>``
(:class:`app.cache.Cache` does that), and after a lost invalidation the writer
moves that node to a new epoch in Postgres (table ``cache_epochs``). Nothing
stored there before is reachable afterwards:

* this process stops using the node the moment the loss is reported (its
  keys are plain misses), and adopts the new epoch when the bump commits;
* every other process polls the table every ``interval`` seconds (250 ms by
  default) and stops reading the old keys at its next poll: a write is
  visible everywhere within memcached timeout + bump + interval of its
  commit, under the contract's one second;
* the write answers only one interval after the bump committed. A "node" of
  the service is several worker processes: the writer's next read may land
  on a sibling worker, which must have polled by then. This costs ~350 ms
  on writes, and only on writes whose invalidation was lost;
* bumps are coalesced: a writer waits for a bump that *began* after its loss
  (a later one covers every earlier loss), so a sick node costs one UPDATE at
  a time, not one per write;
* if the bump fails (Postgres went away right after the commit), this process
  keeps bypassing the node and retries in the background, with a warning;
  other processes may serve the old value until a retry succeeds: the one
  window this design cannot close without Postgres.

Epochs only grow and are never reused: they come from a sequence (see the
migration), a process never adopts a lower value than one it knows, and a
node without a row gets a fresh value rather than 0, so neither a TRUNCATE
nor a lost row can revive old keys. Until it has read the table once a
process does not use the cache at all (it cannot know which keys are
current). The poller is a greenlet started on first use, so in the worker,
never in the gunicorn master; while Postgres is down it keeps the epochs it
last read.
"""

from __future__ import annotations

import logging
import time

import gevent
import gevent.lock

from app.metrics import NULL_METRICS, Metrics
from app.queries import cache_epochs as q

log = logging.getLogger(__name__)

_RETRY_MAX = 1.0  # seconds between attempts to bump once Postgres failed
_POLL_SLACK = 0.1  # a poll's own duration and scheduling delay, on top of the interval


class Epochs:
    def __init__(self, pool, *, interval: float = 0.25,
                 metrics: Metrics = NULL_METRICS):
        self._pool = pool
        self._interval = interval
        self._metrics = metrics
        self._nodes: list[str] = []
        self._known: dict[str, int] = {}  # the highest epoch seen, per node
        self._lost: dict[str, int] = {}  # invalidations that missed the node, counted
        self._covered: dict[str, int] = {}  # ...of which a committed bump covers
        self._usable: dict[str, int] = {}  # what get() answers: known, nothing uncovered
        self._lock = gevent.lock.Semaphore()
        self._poller: gevent.Greenlet | None = None
        self._retrying: dict[str, gevent.Greenlet] = {}
        self._poll_failing = False
        self._last_bump = 0.0  # monotonic time the latest bump committed

    def watch(self, nodes: list[str]) -> None:
        """Set the nodes (``host:port``) whose epochs the cache needs."""
        self._nodes = list(nodes)
        for node in self._nodes:
            self._lost.setdefault(node, 0)
            self._covered.setdefault(node, 0)

    def get(self, node: str) -> int | None:
        """The epoch to store ``node``'s keys under; None: do not use the node now."""
        if self._poller is None:
            self._start()
        return self._usable.get(node)

    def lost(self, nodes: list[str], *, wait: bool = True) -> float:
        """Invalidations did not reach ``nodes``; call after the commit.

        Returns once, for each node, a bump that began after this call has
        committed and every process has had a poll interval to adopt it, so
        that no worker (on this host or another) serves the old values to the
        writer's next read. A node whose bump failed stays bypassed here while
        a retry runs in the background. With ``wait=False`` it returns after
        the bumps, with the ``time.monotonic()`` the writer must wait for
        before it answers (0.0: nothing to wait for).
        """
        tickets = {}
        for node in nodes:
            self._lost[node] += 1
            tickets[node] = self._lost[node]
            self._publish(node)  # bypass it at once: it may hold a value older than the commit
        bumped = False
        for node, ticket in tickets.items():
            if self._bump(node, ticket):
                bumped = True
            elif node not in self._retrying:
                self._retrying[node] = gevent.spawn(self._retry, node)
        if not bumped:
            return 0.0
        adopted = self._last_bump + self._interval + _POLL_SLACK
        if wait:
            gevent.sleep(max(0.0, adopted - time.monotonic()))
        return adopted

    def refresh(self) -> bool:
        """Read the table once (what the poller does); False if Postgres failed."""
        try:
            # Ahead of the requests waiting for a connection (app/slots.py): a
            # poll later than _POLL_SLACK would let a writer answer before
            # this process stopped reading the node's old keys. It still waits
            # for one connection to come back (under load, a few ms: what one
            # query holds it), not for every request in line before it.
            with self._pool.connection(ahead=True) as conn, conn.cursor() as cur:
                found = q.current(cur, self._nodes)
                missing = [node for node in self._nodes if node not in found]
                if missing:
                    q.create_missing(cur, missing)
                    found = q.current(cur, self._nodes)
        except Exception as ex:  # noqa: BLE001 - keep the last known epochs
            self._metrics.incr("cache.epochs.poll_error")
            if not self._poll_failing:
                log.warning("cannot read the cache epochs (%s); keeping the last known ones",
                            type(ex).__name__)
            self._poll_failing = True
            return False
        self._poll_failing = False
        for node, epoch in found.items():
            self._adopt(node, epoch)
        return True

    def close(self) -> None:
        gevent.killall([g for g in (self._poller, *self._retrying.values()) if g is not None])

    # -- internals ----------------------------------------------------------

    def _start(self) -> None:
        self._poller = gevent.spawn(self._poll)
        self.refresh()  # now, so the first requests need not bypass the cache

    def _poll(self) -> None:
        while True:
            gevent.sleep(self._interval)
            self.refresh()

    def _bump(self, node: str, ticket: int) -> bool:
        with self._lock:
            if self._covered[node] >= ticket:
                return True  # a bump that began after our loss committed meanwhile
            covers = self._lost[node]  # every loss counted so far precedes this bump
            try:
                # Ahead too: the writers that lost an invalidation wait for it.
                with self._pool.connection(ahead=True) as conn, conn.cursor() as cur:
                    epoch = q.bump(cur, node)
            except Exception as ex:  # noqa: BLE001 - bypass the node and retry
                self._metrics.incr("cache.epochs.bump_error")
                log.warning("cannot bump the cache epoch of %s (%s): bypassing the node in "
                            "this process and retrying", node, type(ex).__name__)
                return False
            self._metrics.incr("cache.epochs.bump")
            self._last_bump = time.monotonic()
            self._covered[node] = max(self._covered[node], covers)
            self._adopt(node, epoch)
            return True

    def _retry(self, node: str) -> None:
        delay = self._interval
        try:
            while self._covered[node] < self._lost[node]:
                gevent.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                self._bump(node, self._lost[node])
        finally:
            del self._retrying[node]

    def _adopt(self, node: str, epoch: int) -> None:
        if epoch > self._known.get(node, -1):
            self._known[node] = epoch
        self._publish(node)

    def _publish(self, node: str) -> None:
        if node in self._known and self._covered[node] >= self._lost[node]:
            self._usable[node] = self._known[node]
        else:
            self._usable.pop(node, None)
