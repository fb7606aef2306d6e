"""app.logs configured onto an in-memory stderr for one test, then put back."""

from __future__ import annotations

import contextlib
import io
import logging


@contextlib.contextmanager
def buffered_app_log(monkeypatch):
    """Yield the bytes stream the app's log lines are flushed to."""
    from app import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._buffer
    stream = io.BytesIO()

    class Stderr:
        buffer = stream

    monkeypatch.setattr("sys.stderr", Stderr())
    logs.configure("info")
    try:
        yield stream
    finally:
        logs.flushing.unregister(logs._buffer.flush)
        root.handlers[:], root.level, logs._buffer = saved[0], saved[1], saved[2]
