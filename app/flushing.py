"""Buffers that must reach the outside world: flushed on a timer and at exit.

The request log (app.logs) and statsd (app.metrics) buffer per process and
register their ``flush`` here. Each buffer also flushes itself when full, so
this module only bounds how long a quiet worker holds data back:

- ``start(interval)``: a greenlet flushing every ``interval`` seconds, started
  by the worker (gunicorn.conf.py post_worker_init) once gevent is patched;
- ``flush_all()``: from gunicorn's ``worker_exit`` hook, which runs after a
  graceful shutdown (SIGTERM, max_requests) has let in-flight requests
  finish, and from ``atexit`` for every other process (CLI, tests).

Imports nothing heavy: gunicorn.conf.py runs in the master.
"""

from __future__ import annotations

import atexit
import sys
import weakref

# Weak references to bound methods: a buffer dropped by its owner (an app
# built and thrown away in a test) is not kept alive by being registered.
_flushers: list[weakref.WeakMethod] = []


def register(flush) -> None:
    """Call ``flush()`` (a bound method) on every tick and at exit, in order."""
    _flushers.append(weakref.WeakMethod(flush))


def unregister(flush) -> None:
    _flushers[:] = [ref for ref in _flushers if ref() not in (None, flush)]


def flush_all() -> None:
    for ref in list(_flushers):
        flush = ref()
        if flush is None:
            continue
        try:
            flush()
        except Exception as ex:  # noqa: BLE001 - one broken sink must not keep the others
            print(f"peregrine: flush failed: {ex!r}", file=sys.__stderr__)


def start(interval: float):
    """Spawn the flushing greenlet (call in a gevent worker, after patching)."""
    import gevent

    def run():
        while True:
            gevent.sleep(interval)
            flush_all()

    return gevent.spawn(run)


atexit.register(flush_all)
