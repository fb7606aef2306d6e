"""Waiting on a gevent Event without the lost wake-up of an Event already set.

gevent (26.9.0, the pinned version) can leave a greenlet waiting forever on an
Event that is *set*. ``Event.set()`` schedules a notifier callback for the
greenlets linked to it. A greenlet that calls ``wait()`` while the Event is set
and that callback is still pending does not return at once: it appends itself
to the callback's list, to be woken in turn. If, before the callback runs, the
last linked greenlet unlinks (its own ``wait(timeout)`` expired in the same
loop iteration), ``AbstractLinkable.unlink`` stops the pending callback, and
with it the list the latecomer is on: nothing ever switches back to it.

Under load that happened to the group invalidation (app/coalescing.py): a
round's runner set its round done, then waited on it as its own caller, while
a caller waiting for that round with a 50 ms patience timed out in the same
iteration. In 3 of 31 runs of tests/integration/test_orders_concurrency.py's
opposite-lines test (100 concurrent orders each), one order never got an answer.

:func:`wait_for` never calls ``wait()`` on an Event that is set: a greenlet
that waits is then always linked to the Event itself, which keeps a notifier
scheduled for it however many other waiters unlink.
"""

from __future__ import annotations

import gevent.event


def wait_for(event: gevent.event.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``: True once the event is set, False on timeout."""
    return event.is_set() or event.wait(timeout)
