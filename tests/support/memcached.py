"""A memcached server made unresponsive on purpose."""

from __future__ import annotations

import contextlib
import os
import signal

from app.manage.services import MemcachedServer
from tests.support.greenlets import green_wait_until


@contextlib.contextmanager
def stopped(server: MemcachedServer):
    """The memcached process frozen: connections hang rather than fail."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    # kill() only queues the stop: wait until every thread is stopped, or one
    # still running could answer a request "sent to a frozen server".
    green_wait_until(lambda: _all_threads_stopped(server.proc.pid), 5.0)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def _all_threads_stopped(pid: int) -> bool:
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return True
