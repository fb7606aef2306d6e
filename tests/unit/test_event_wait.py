"""app/event_wait.py: a wait on an Event already set returns, whatever else unlinks."""

import time

import gevent
import gevent.event

from app.event_wait import wait_for


def test_a_wait_on_a_set_event_returns_though_the_last_linked_waiter_times_out_meanwhile():
    # The interleaving gevent loses (app/event_wait.py): one iteration of the
    # loop wakes the setter, which then waits on the event it set while its
    # notifier is pending, and expires the linked waiter's timeout after it.
    event = gevent.event.Event()
    woke = []

    def linked_with_timeout():
        woke.append(("linked", wait_for(event, 0.02)))

    def sets_then_waits():
        gevent.sleep(0.01)
        event.set()
        woke.append(("setter", wait_for(event)))

    waiters = [gevent.spawn(linked_with_timeout), gevent.spawn(sets_then_waits)]
    gevent.sleep(0)  # both are waiting: one linked until 20 ms, one asleep until 10 ms
    time.sleep(0.05)  # block the loop past both deadlines: they come due together
    gevent.joinall(waiters, timeout=2)
    assert ("setter", True) in woke, woke
    assert len(woke) == 2


def test_wait_for_times_out_and_sees_a_later_set():
    event = gevent.event.Event()
    assert wait_for(event, 0.01) is False
    gevent.spawn_later(0.01, event.set)
    assert wait_for(event, 2) is True
    assert wait_for(event) is True
