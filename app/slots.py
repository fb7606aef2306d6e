"""Counted slots for greenlets, first come first served, handed over on release.

The connection pool's gate (app/db.py). gevent's ``BoundedSemaphore`` does
the counting too, but not in order: ``release()`` only schedules a wake-up
for the greenlet that waited longest, and any greenlet that runs before that
callback finds the count raised and takes the slot. A greenlet that releases
and at once asks again (a request that makes two queries) can so pass a
waiter over and over, until the waiter's timeout fails a request that was
first in line. Here a slot that is released while greenlets wait is given to
the first of them there and then; it is never free for a newcomer to take,
and a newcomer queues behind the waiters.

Who owns a handed-over slot is decided by one fact: a waiter still in
``_waiters`` has none; one that ``release()`` took out of it has one. Every
way a wait ends (handed a slot, timed out, or an exception thrown in: a
gevent.Timeout around the request, GreenletExit) checks that fact, so a slot
is neither lost (a waiter killed just after it was handed one passes it on)
nor doubled (a wait that times out just as it is handed one keeps it).

A caller that others wait on (the cache invalidation round after a commit,
which every writer of that round waits for before it answers) may ask
``ahead``: it joins a second line, served before the first (and in order
itself, so a later ``ahead`` caller does not pass an earlier one). It still
takes no slot from a greenlet that holds one, and none that is being handed
over; it only passes the waiters who would otherwise wait for it twice.

PERF: a wait is one gevent ``Waiter`` and one libev timer; the semaphore's
is a linked callback and a ``gevent.Timeout`` (pure Python) besides. 64
greenlets through 10 slots: 2.3 us instead of 4.2 us of CPU per wait and
release (bench/README.md, "GET /v1/users/me: verified tokens, pool slots in order").
"""

from __future__ import annotations

import collections

from gevent._waiter import Waiter
from gevent.hub import get_hub

_HANDED_OVER = object()
_TIMED_OUT = object()


class Slots:
    """``size`` slots; :meth:`acquire` waits up to ``timeout`` seconds for one."""

    __slots__ = ("size", "_free", "_ahead", "_waiters")

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("a pool needs at least one slot")
        self.size = size
        self._free = size
        #: Two lines, each first come first served; the ``ahead`` one is served first.
        self._ahead: collections.deque[Waiter] = collections.deque()
        self._waiters: collections.deque[Waiter] = collections.deque()

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._ahead) + len(self._waiters)

    def acquire(self, timeout: float, *, ahead: bool = False) -> bool:
        """Take a slot: True, or False when none came within ``timeout`` seconds.

        ``ahead``: wait before those already waiting (after earlier ``ahead`` callers).
        """
        # Waiters only exist while no slot is free: release() hands slots to
        # them before it counts one free, so a newcomer cannot pass them.
        if self._free:
            self._free -= 1
            return True
        hub = get_hub()
        waiter: Waiter = Waiter(hub)
        timer = hub.loop.timer(timeout)  # before joining the line: it may refuse the timeout
        (self._ahead if ahead else self._waiters).append(waiter)
        try:
            timer.start(waiter.switch, _TIMED_OUT)
            ended = waiter.get()
        except BaseException:
            timer.close()
            if not self._leave(waiter):
                self.release()  # handed one just before the exception: pass it on
            raise
        timer.close()
        # Handed over, or timed out in the very iteration it was handed one.
        return ended is _HANDED_OVER or not self._leave(waiter)

    def release(self) -> None:
        """Give a slot back: to the first waiter if any, else to the free count."""
        line = self._ahead or self._waiters
        if line:
            waiter = line.popleft()
            # From the hub: Waiter.switch() may only be called there. If the
            # waiter has given up meanwhile (an exception thrown in), its
            # Waiter just stores the value; it saw it had the slot and passed it on.
            waiter.hub.loop.run_callback(waiter.switch, _HANDED_OVER)
            return
        if self._free >= self.size:
            raise ValueError("released more slots than were acquired")
        self._free += 1

    def _leave(self, waiter: Waiter) -> bool:
        """Take ``waiter`` out of the line: False if it was handed a slot already."""
        for line in (self._ahead, self._waiters):
            try:
                line.remove(waiter)
            except ValueError:
                continue
            return True
        return False
