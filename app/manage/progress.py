"""Progress of long CLI commands on stderr (rich): rate, elapsed time and ETA.

Every phase of a command gets its own line, including the ones with no row
count (an ANALYZE) so a pause is never silent. On a terminal the lines are
live bars; in a log (no tty) rich prints each phase once, when it ends.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Rate(TextColumn):
    """Rows per second of one phase."""

    def __init__(self):
        super().__init__("")

    def render(self, task):
        speed = task.finished_speed or task.speed
        return self.text_format if speed is None else f"{speed:,.0f}/s"


class Phases:
    """``with Phases() as phases: with phases.phase("products", n) as step: step(k)``."""

    def __init__(self, stream=None):
        self.console = Console(file=stream or sys.stderr, highlight=False)
        if not self.console.is_terminal:
            self.console.width = 120  # a log has no terminal width; keep whole lines
        self._progress = Progress(
            TextColumn("{task.description:<13}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=False,
        )

    def __enter__(self) -> Phases:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    @contextmanager
    def phase(self, label: str, total: int):
        """A phase of ``total`` steps; yields ``advance(steps)``."""
        task: TaskID = self._progress.add_task(label, total=max(total, 1), note="")
        yield lambda steps=1: self._progress.advance(task, steps)
        self._progress.update(task, completed=max(total, 1))
        self._progress.stop_task(task)

    def skipped(self, label: str, total: int, note: str) -> None:
        """A phase with nothing to do: an empty bar and why, not a full one."""
        task = self._progress.add_task(label, total=max(total, 1), note=note)
        self._progress.stop_task(task)

    def note(self, label: str, text: str) -> None:
        """Text after a phase's bar, e.g. what it really added."""
        for task in self._progress.tasks:
            if task.description == label:
                self._progress.update(task.id, note=text)
