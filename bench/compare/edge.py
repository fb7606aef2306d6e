"""nginx as the Ansible role deploys a single node: the "lb" site, TLS, in front of the app.

Rendered from deploy/ansible/roles/nginx (its templates and its defaults, by
tests/support/nginx.py, the renderer the nginx integration tests use). What
differs from a deployed node is listed by ``Edge.deviations()`` and printed
with the results: the temporary paths and ports, a self-signed certificate
of our own, and the per-IP limits, which are off because every simulated
client comes from 127.0.0.1 (for the same reason the app's rate limit is
off in every scenario).
"""

import collections
import os
import re
import shutil
import ssl
import tempfile
import time
from datetime import datetime
from http.client import HTTPSConnection
from pathlib import Path

from bench.compare.servers import children
from tests.support.nginx import Nginx, role_defaults, self_signed_certificate
from tests.support.processes import free_port, stop_process, wait_for_port

# One client address for every simulated client: a per-IP limit would refuse them.
PER_IP_LIMITS_OFF = {"nginx_limit_conn_per_ip": 0, "nginx_limit_req_per_ip": 0}
STATUS = re.compile(r'" (\d{3}) ')
# '127.0.0.1 - [2026-12-01T18:40:00+00:00] "GET ..." 200 612 rt=0.001 urt=0.000 ...'
TIMES = re.compile(r"\[([^\]]+)\] .* rt=([\d.]+) urt=([\d.]+)")


class Edge:
    """nginx with the role's lb site, proxying to ``upstream`` (e.g. ``unix:/...sock``)."""

    def __init__(self, upstream: str, nofile: int):
        """``nofile``: the open-file limit nginx can have here; where it is below the
        role's worker_rlimit_nofile (nginx_limit_nofile), that is used instead, as
        nginx could not raise its workers' limit above it anyway."""
        self.tls_dir = Path(tempfile.mkdtemp(prefix="peregrine-tls-"))
        self_signed_certificate(self.tls_dir)
        self.https_port = free_port()
        self.variables = {"nginx_https_port": self.https_port,
                          "nginx_tls_dir": str(self.tls_dir), **PER_IP_LIMITS_OFF}
        if nofile < int(role_defaults()["nginx_limit_nofile"]):
            self.variables["nginx_limit_nofile"] = nofile
        self.nginx = Nginx("peregrine-lb.conf.j2", [upstream], **self.variables)

    def start(self, cpus: set[int]) -> "Edge":
        self.nginx.start()
        wait_for_port(self.https_port, 10, self.nginx.proc)
        # The master forks its workers before we can pin it: pin them all.
        for pid in self.pids():
            os.sched_setaffinity(pid, cpus)
        return self

    def pids(self) -> list[int]:
        """The master, then its workers."""
        return [self.nginx.proc.pid, *children(self.nginx.proc.pid)]

    def workers(self) -> list[int]:
        return children(self.nginx.proc.pid)

    def get(self, path: str) -> tuple[int, bytes]:
        """One request over HTTPS, as a client of the site would send it."""
        context = ssl._create_unverified_context()  # our own self-signed certificate
        conn = HTTPSConnection("127.0.0.1", self.https_port, context=context, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_until_serving(self, path: str = "/healthz", timeout: float = 30) -> None:
        """Until the app answers 200 through nginx (502 while its socket is not up)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.get(path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"nothing served through nginx on {self.https_port} in {timeout} s")

    def deviations(self) -> list[str]:
        """Every way this nginx differs from the role's rendering on a deployed node."""
        defaults = role_defaults()
        found = [f"{name}: {defaults[name]} -> {value}" for name, value in
                 self.variables.items() if name in PER_IP_LIMITS_OFF
                 or name == "nginx_limit_nofile"]
        found += [f"listen ports {defaults['nginx_http_port']}/{defaults['nginx_https_port']} "
                  f"-> {self.nginx.port}/{self.https_port}",
                  f"nginx_tls_dir {defaults['nginx_tls_dir']} -> a temporary directory "
                  f"(self-signed P-256, as the role makes one without a certificate)"]
        found += [f"{old!r} -> {new!r}" for old, new in self.nginx.changes]
        return found

    def stop(self, since: float = 0) -> dict:
        """Stop nginx; what its logs say: status counts, the error log's lines, and
        nginx's request time and the app's share of it (p50, p99) from ``since`` on
        (whole seconds: the log's resolution)."""
        stop_process(self.nginx.proc, grace=20)  # exiting flushes the buffered access log
        root = self.nginx.root
        statuses = collections.Counter()
        request_times, upstream_times = [], []
        with open(root / "access.log", errors="replace") as log:
            for line in log:
                match = STATUS.search(line)
                statuses[match.group(1) if match else "?"] += 1
                times = TIMES.search(line)
                if times and datetime.fromisoformat(times[1]).timestamp() >= int(since):
                    request_times.append(float(times[2]))
                    upstream_times.append(float(times[3]))
        errors = collections.Counter()
        try:
            with open(root / "error.log", errors="replace") as log:
                for line in log:
                    # "2026/12/01 18:00:00 [alert] 123#123: *45 message, client: ..."
                    message = re.sub(r"^\S+ \S+ |\d+#\d+: (\*\d+ )?|, client: .*$", "",
                                     line.strip())
                    errors[message] += 1
        except FileNotFoundError:
            pass
        self.nginx.stop()
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        return {"statuses": dict(statuses), "error_log": dict(errors.most_common(5)),
                "error_log_lines": sum(errors.values()),
                "request_time_ms": quantiles(request_times),
                "upstream_time_ms": quantiles(upstream_times)}


def quantiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50": None, "p99": None}
    ordered = sorted(seconds)

    def ms_at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000
    return {"p50": ms_at(0.50), "p99": ms_at(0.99)}
