"""app/slots.py: slots go to waiters in order, and no way a wait ends loses or doubles one."""

import time

import gevent
import pytest

from app.slots import Slots


def test_a_released_slot_goes_to_the_first_waiter_not_to_the_greenlet_that_asks_again():
    # gevent's BoundedSemaphore lets the releaser take the slot straight back
    # (its wake-up of the waiter is only scheduled): the waiter starves.
    slots = Slots(1)
    order = []
    assert slots.acquire(1.0)

    def waiter():
        assert slots.acquire(1.0)
        order.append("waiter")
        gevent.sleep(0.01)
        slots.release()

    queued = gevent.spawn(waiter)
    gevent.sleep(0)  # the waiter is in line
    assert slots.waiting == 1
    slots.release()
    assert slots.acquire(1.0)  # no yield in between: queues behind the waiter
    order.append("releaser")
    slots.release()
    queued.join()
    assert order == ["waiter", "releaser"]
    assert slots.free == 1


def test_waiters_are_served_in_the_order_they_came():
    slots = Slots(2)
    assert slots.acquire(1.0) and slots.acquire(1.0)
    served = []

    def customer(n):
        assert slots.acquire(2.0)
        served.append(n)
        gevent.sleep(0.001)
        slots.release()

    line = []
    for n in range(10):
        line.append(gevent.spawn(customer, n))
        gevent.sleep(0)
    slots.release()
    slots.release()
    gevent.joinall(line, raise_error=True)
    assert served == list(range(10))
    assert slots.free == 2 and slots.waiting == 0


def test_a_wait_times_out_within_its_timeout_and_leaves_the_line():
    slots = Slots(1)
    assert slots.acquire(1.0)
    started = time.monotonic()
    assert slots.acquire(0.1) is False
    assert 0.1 <= time.monotonic() - started < 0.5
    assert slots.waiting == 0
    slots.release()
    assert slots.free == 1


def test_a_waiter_killed_in_line_takes_no_slot():
    slots = Slots(1)
    assert slots.acquire(1.0)
    queued = gevent.spawn(slots.acquire, 5.0)
    gevent.sleep(0)
    queued.kill()
    assert slots.waiting == 0
    slots.release()
    assert slots.free == 1


def test_a_waiter_killed_after_it_was_handed_a_slot_passes_the_slot_on():
    # The interleaving: release() hands the slot over (the wake-up is only
    # scheduled), then an exception reaches the waiter before it runs. Both
    # happen in one hub callback, as gevent's own kill() throws from the hub.
    slots = Slots(1)
    assert slots.acquire(1.0)
    first = gevent.spawn(slots.acquire, 5.0)
    second = gevent.spawn(slots.acquire, 5.0)
    gevent.sleep(0)
    assert slots.waiting == 2
    seen = {}

    def release_then_kill_first():
        slots.release()  # handed to `first`, whose wake-up is pending
        seen["waiting after the handover"] = slots.waiting
        first.throw(gevent.GreenletExit)  # reaches it before that wake-up

    gevent.get_hub().loop.run_callback(release_then_kill_first)
    assert second.get(timeout=1.0) is True  # the slot went on to the next waiter
    assert seen == {"waiting after the handover": 1}
    assert first.dead and isinstance(first.value, gevent.GreenletExit)
    gevent.sleep(0.01)  # the stale wake-up of `first` has run: it changed nothing
    assert slots.free == 0 and slots.waiting == 0
    slots.release()
    assert slots.free == 1


def test_a_wait_that_times_out_as_it_is_handed_a_slot_keeps_it():
    # The interleaving: one loop iteration runs two expired timers, the
    # first releasing (the handover's wake-up is scheduled, to run after
    # the timers), the second the waiter's timeout.
    slots = Slots(1)
    assert slots.acquire(1.0)
    results = []
    waiter = gevent.spawn(lambda: results.append(slots.acquire(0.05)))
    gevent.sleep(0)
    releaser = gevent.get_hub().loop.timer(0.01)
    releaser.start(slots.release)
    time.sleep(0.1)  # block the loop: both timers are due when it runs again
    waiter.join()
    releaser.close()
    assert results == [True]
    assert slots.free == 0 and slots.waiting == 0
    slots.release()
    assert slots.free == 1


def test_more_releases_than_acquires_are_refused():
    slots = Slots(2)
    with pytest.raises(ValueError):
        slots.release()
    with pytest.raises(ValueError):
        Slots(0)


def test_many_greenlets_never_hold_more_than_the_slots():
    slots = Slots(3)
    held, peak = 0, 0

    def work():
        nonlocal held, peak
        for _ in range(20):
            assert slots.acquire(5.0)
            held += 1
            peak = max(peak, held)
            gevent.sleep(0)
            held -= 1
            slots.release()

    gevent.joinall([gevent.spawn(work) for _ in range(30)], raise_error=True)
    assert peak == 3 and slots.free == 3 and slots.waiting == 0


def test_a_timeout_the_timer_refuses_leaves_no_one_in_line():
    slots = Slots(1)
    assert slots.acquire(1.0)
    with pytest.raises(TypeError):
        slots.acquire(None)  # type: ignore[arg-type]
    assert slots.waiting == 0
    slots.release()
    assert slots.free == 1  # the slot was not handed to a waiter that is gone


def served_in_order(arrivals):
    """Queue ``(name, ahead)`` waiters on one held slot, in that order; release it.

    Returns the names in the order the slot reached them.
    """
    slots = Slots(1)
    assert slots.acquire(1.0)
    served = []

    def customer(name, ahead):
        assert slots.acquire(2.0, ahead=ahead)
        served.append(name)
        slots.release()

    line = []
    for name, ahead in arrivals:
        line.append(gevent.spawn(customer, name, ahead))
        gevent.sleep(0)  # in line before the next one comes
    assert slots.waiting == len(arrivals)
    slots.release()
    gevent.joinall(line, raise_error=True)
    assert slots.free == 1 and slots.waiting == 0
    return served


def test_an_ahead_waiter_is_served_before_those_already_waiting():
    # The cache invalidation round that every waiting writer waits for asks
    # ahead: it must not wait for each of them to have had a slot first.
    assert served_in_order([("first", False), ("second", False), ("ahead", True)]) == [
        "ahead", "first", "second"]


def test_an_ahead_caller_takes_a_free_slot_at_once_and_no_slot_held_by_another():
    slots = Slots(2)
    assert slots.acquire(1.0, ahead=True)
    assert slots.acquire(1.0)
    assert not slots.acquire(0.01, ahead=True), "took a slot that was not free"
    assert slots.waiting == 0, "a timed-out ahead waiter stayed in line"
    slots.release()
    slots.release()
    assert slots.free == 2


def test_ahead_waiters_are_served_in_the_order_they_came_before_the_others():
    arrivals = [("plain 1", False), ("ahead 1", True), ("plain 2", False), ("ahead 2", True)]
    assert served_in_order(arrivals) == ["ahead 1", "ahead 2", "plain 1", "plain 2"]


def test_an_ahead_waiter_killed_after_it_was_handed_a_slot_passes_it_on():
    # As for a waiter in the plain line: the handover and the exception in
    # one hub callback, before the waiter runs.
    slots = Slots(1)
    assert slots.acquire(1.0)
    plain = gevent.spawn(slots.acquire, 5.0)
    gevent.sleep(0)
    doomed = gevent.spawn(slots.acquire, 5.0, ahead=True)
    gevent.sleep(0)
    assert slots.waiting == 2

    def release_then_kill_the_ahead_waiter():
        slots.release()  # handed to `doomed`, first in line
        doomed.throw(gevent.GreenletExit)

    gevent.get_hub().loop.run_callback(release_then_kill_the_ahead_waiter)
    assert plain.get(timeout=1.0) is True  # the slot went on to the plain line
    assert doomed.dead and isinstance(doomed.value, gevent.GreenletExit)
    gevent.sleep(0.01)
    assert slots.free == 0 and slots.waiting == 0
    slots.release()
    assert slots.free == 1
