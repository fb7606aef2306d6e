"""Forcing interleavings between greenlets: pause a reader mid-load, wait cooperatively."""

from __future__ import annotations

import time

import gevent
import gevent.event


class Pause:
    """Called by a loader: holds it (after it read its data) until released."""

    def __init__(self):
        self.reached = gevent.event.Event()
        self.released = gevent.event.Event()
        self.reader = None  # the greenlet to pause; others pass straight through

    def __call__(self):
        self.reached.set()
        assert self.released.wait(10), "never released"

    def wait_reached(self):
        assert self.reached.wait(10), "the reader never got to its load"


def start_reader(pause: Pause, call, *args, **kwargs):
    """Run ``call`` in a greenlet and return once it has reached ``pause``."""
    pause.reader = gevent.spawn(call, *args, **kwargs)
    pause.wait_reached()
    return pause.reader


def finish(pause: Pause):
    """Release the paused reader and return what its call returned."""
    pause.released.set()
    return pause.reader.get(timeout=10)


def green_wait_until(predicate, timeout: float):
    """Poll ``predicate`` yielding to gevent (the epoch pollers run meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        gevent.sleep(0.01)


def first_change(read, old, deadline):
    """Seconds until ``read()`` stops answering ``old`` (yielding to gevent); None: never."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if read() != old:
            return time.monotonic() - started
        gevent.sleep(0.01)
    return None
