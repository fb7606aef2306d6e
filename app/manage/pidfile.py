"""A development server run as a detached child, found again through its pid file.

``services up`` starts memcached and the SMTP catcher this way and a later
``services down`` (another process) stops them, so the pid file, not a
``Popen`` handle, is what identifies the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class PidfileProcess:
    """One server process: ``argv()`` to run, a port to wait for, a pid file and a log."""

    name = "server"  # the pid file and log are ``<root>/<name>.pid`` / ``.log``
    start_timeout = 10.0
    stop_timeout = 5.0

    def __init__(self, root: Path, port: int):
        self.root = Path(root)
        self.port = port
        self.pidfile = self.root / f"{self.name}.pid"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def check_installed(self) -> None:
        """Raise ``ServiceError`` with what to install when the server is missing."""

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def running(self) -> bool:
        return self._pid() is not None

    def start(self) -> None:
        from app.manage.services import wait_for_port

        self.check_installed()
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{self.name}.log", "ab") as log:
            # Its own session: Ctrl-C in the terminal that ran `services up`
            # must not take the server down with it.
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                         start_new_session=True)
        self.pidfile.write_text(str(self.proc.pid))
        wait_for_port(self.port, self.start_timeout, self.proc)

    def stop(self) -> None:
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                # Our own child must be reaped, or it lingers as a zombie that
                # still answers kill(pid, 0).
                if self.proc is not None and self.proc.poll() is not None:
                    break
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)
        self.proc = None
