"""Servers under test as child processes: a free port, a readiness wait, a bounded stop.

One copy of each loop the test servers (gunicorn, nginx, the worker
tests' echo servers) used to repeat. Ports and the listening check come from
``app.manage.services``, the same code the development stack uses.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from app.manage.services import free_port, wait_for_port

__all__ = ["free_port", "stop_process", "wait_for_port", "wait_until_ready"]


def wait_until_ready(ready: Callable[[], bool], proc: subprocess.Popen, timeout: float,
                     describe: Callable[[], str] = lambda: "") -> None:
    """Poll ``ready()`` until it is true; raise if ``proc`` exits first or time runs out.

    ``ready`` may raise OSError while the server is still coming up.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{describe()}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} was not ready within {timeout}s:\n{describe()}")


def stop_process(proc: subprocess.Popen | None, grace: float) -> int | None:
    """TERM, then KILL after ``grace`` seconds; the exit status (None if never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
