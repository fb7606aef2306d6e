"""A dependency-free progress bar for long CLI commands (stderr only)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress("products", total) as bar: bar.advance(n)``."""

    def __init__(self, label: str, total: int, stream=None):
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_percent = -1
        self._last_logged = -1

    def __enter__(self):
        self._draw()
        return self

    def advance(self, count: int) -> None:
        self.done = min(self.total, self.done + count)
        self._draw()

    def __exit__(self, *exc):
        self._draw(final=True)
        return False

    def _draw(self, final: bool = False) -> None:
        percent = int(100 * self.done / self.total)
        if not final and percent == self._last_percent:
            return
        self._last_percent = percent
        elapsed = time.monotonic() - self.started
        width = 30
        filled = int(width * self.done / self.total)
        line = (f"{self.label:>10} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} {percent:3d}% {elapsed:5.1f}s")
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif (final or percent % 25 == 0) and percent != self._last_logged:
            self._last_logged = percent  # logs get one line per quarter
            self.stream.write(line + "\n")
        self.stream.flush()
