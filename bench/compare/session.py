"""One server under test: started, its worker found, stopped, its log counted."""

import os
import sys
import time
import urllib.error

from bench.compare import client, servers
from bench.http_workers import free_port


class Session:
    """One server started, its worker found, its requests measured, then stopped."""

    def __init__(self, server, env, tmp):
        self.server = server
        self.port = free_port()
        self.log_path = os.path.join(tmp, f"{server.name}-{self.port}.log")
        with open(self.log_path, "wb") as log:
            self.process = servers.start(server, self.port, env, log)

    def __enter__(self):
        probe = "/healthz" if self.server.kind == "peregrine" else "/v1/users/me"
        try:
            wait_for(self.port, probe, self.process)
        except Exception:
            self.__exit__()
            raise
        self.pid = servers.worker_pid(self.server, self.process)
        return self

    def __exit__(self, *exc):
        servers.stop(self.process)
        with open(self.log_path, "rb") as f:
            log = f.read()
        self.request_lines = log.count(b'"msg":"request"')
        if exc and exc[0] is not None or self.process.returncode not in (0, -15):
            sys.stderr.write(log[-3000:].decode(errors="replace"))
        os.unlink(self.log_path)

    def worker_replaced(self) -> None:
        """Follow the worker that replaced ``self.pid`` (gunicorn recycled it)."""
        old = self.pid
        for _ in range(100):
            found = [pid for pid in servers.children(self.process.pid) if pid != old]
            if found:
                self.pid = found[0]
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.server.name}: no worker replaced {old}")

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"


def wait_for(port, path, process):
    """Until the server answers at all (a 401 from a peer's /me is an answer)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode} before serving")
        try:
            client.call(port, "GET", path)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing served on port {port} within 30 s")
