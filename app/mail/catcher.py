"""A local SMTP server for development: every message lands in a folder as ``.eml``.

``python -m app services up`` starts it (``python -m app.mail.catcher``) on
a free loopback port and points ``PEREGRINE_SMTP_URL`` at it, so the mails
the delivery worker sends can be read in ``.run/mail/`` with any mail
reader or a text editor. Built on aiosmtpd (a development dependency);
nothing here runs in production.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from app.manage.pidfile import PidfileProcess
from app.manage.services import ServiceError, free_port


class FolderHandler:
    """aiosmtpd handler: write each message, as received, to ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        partial = self.folder / f".{name}.part"
        content = envelope.original_content or envelope.content
        partial.write_bytes(content if isinstance(content, bytes) else content.encode())
        os.replace(partial, self.folder / name)  # a reader never sees half a message
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(prog="python -m app.mail.catcher",
                                     description="Catch SMTP mail into a folder of .eml files.")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    controller = Controller(FolderHandler(args.folder), hostname=args.host, port=args.port)
    controller.start()
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    print(f"catching mail on {args.host}:{args.port} into {args.folder}", flush=True)
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main()


class MailCatcher(PidfileProcess):
    """The catcher as a background process of ``services up`` (pid file, log, port)."""

    name = "mail-catcher"

    def __init__(self, root: Path, port: int | None = None):
        super().__init__(root, port or free_port())
        self.folder = self.root / "mail"

    def describe(self) -> str:
        if not self.running():
            return "stopped"
        return f"caught on 127.0.0.1:{self.port} into {self.folder}"

    def check_installed(self) -> None:
        try:
            import aiosmtpd  # noqa: F401 - a development dependency
        except ImportError:
            raise ServiceError("aiosmtpd is missing: pip install -r requirements-dev.txt") from None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "app.mail.catcher", "--folder", str(self.folder),
                "--port", str(self.port)]
