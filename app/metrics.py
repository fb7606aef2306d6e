"""statsd metrics, or a no-op sink when no address is configured.

One UDP client per worker process, created after the fork (the factory runs
in the worker). Sending to an IP literal never blocks on DNS, and UDP errors
are swallowed, so metrics can never take the service down.

PERF: metrics are aggregated in the process and sent as multi-metric
datagrams (lines separated by ``\\n``, which every statsd server accepts):
counters are summed per name, timer samples are all kept and sent in
arrival order. A datagram per metric cost ~7 us of worker CPU each (a gevent
``sendto``); with gunicorn's three per-request metrics that was five sends
and ~45 us per ``/healthz`` request (bench/README.md, "Logging, metrics and
recycling"). Buffers flush every ``app.flushing`` tick (0.25 s in a worker),
when ``MAX_PENDING`` samples are held, and at exit.

Request latency also goes out as a histogram a Prometheus server can add up
across hosts (a statsd server's timer percentiles are per host and cannot
be): each flush counts the ``http.*`` timer samples it holds into
``LATENCY_BUCKETS_MS`` and sends, per route, one counter per bucket,
``http_latency.<route>.<method>.le_<ms>`` (cumulative, ``le_inf`` for all).
The statsd server keeps summing those counters, so they are the buckets of
a cumulative histogram (deploy/ansible/roles/monitoring relabels them into
``peregrine_http_request_duration_ms_bucket{route,method,le}``).

PERF: the counting happens at flush time over samples already held, so a
request's own path is unchanged; amortized it is ~0.3 us per request for a
busy worker (2,000 samples a flush) and ~0.7 us at 50 a flush, plus ten
lines per route and flush (bench/README.md, "Latency histogram").
"""

from __future__ import annotations

import logging
import socket
from bisect import bisect_left
from collections import Counter
from itertools import repeat
from operator import itemgetter
from typing import Protocol

from gunicorn.glogging import Logger
from gunicorn.instrument.statsd import Statsd

from app import flushing

PREFIX = "peregrine"
#: Largest datagram: fits an Ethernet MTU with IP/UDP headers, so statsd
#: traffic across the network is never fragmented.
MAX_PACKET = 1432
#: Timer samples (or requests) held before the request path flushes itself:
#: bounds memory if the flushing greenlet is late or absent.
MAX_PENDING = 2000
#: Upper bounds (ms) of the request latency histogram's buckets, plus "inf".
#: 500 is the p99 alert's threshold, so it is a bound.
LATENCY_BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
_LATENCY_LABELS = tuple(str(int(b)) for b in LATENCY_BUCKETS_MS) + ("inf",)
#: Timers whose samples are also counted into the histogram (request latency).
LATENCY_TIMER_PREFIX = "http."


class Metrics(Protocol):
    """What the application sends metrics to: statsd, a test's recorder, or nothing.

    Every collaborator that counts takes one, and defaults to
    :data:`NULL_METRICS` rather than ``None``, so no call site checks.
    """

    def incr(self, name: str, count: int = 1) -> None: ...

    def timing(self, name: str, ms: float) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...

    def flush(self) -> None: ...


class NullMetrics:
    """Accepts every metric and drops it."""

    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, ms: float) -> None:
        pass

    def gauge(self, name: str, value: float) -> None:
        pass

    def flush(self) -> None:
        pass


#: The metrics of a collaborator nobody asked to measure.
NULL_METRICS: Metrics = NullMetrics()


def packets(lines, limit: int = MAX_PACKET):
    """Join statsd lines with newlines into datagrams of at most ``limit`` bytes.

    A line longer than ``limit`` goes alone.
    """
    # PERF: one join and one encode for the whole flush, then a cut at the
    # last newline that fits, per datagram: a Python step per datagram
    # (~25 lines) instead of per line.
    blob = "\n".join(lines).encode()
    start, end = 0, len(blob)
    while end - start > limit:
        cut = blob.rfind(b"\n", start, start + limit + 1)
        if cut < 0:  # the next line alone is longer than the limit
            cut = blob.find(b"\n", start + limit)
            if cut < 0:
                break
        yield blob[start:cut]
        start = cut + 1
    if start < end:
        yield blob[start:]


def latency_histogram(timings, prefix: str = "") -> list[str]:
    """statsd counter lines of the latency buckets of the ``http.*`` samples in ``timings``.

    Cumulative per route (a sample counts in every bucket whose bound it is
    within); buckets nothing fell in are left out, as a zero counter adds nothing.
    """
    # PERF: the per-sample work (bucket search, counting) runs in C (map,
    # bisect over float bounds, Counter): +2.6k instructions per request at
    # 2,000 samples a flush, against +3.7k for a Python loop (callgrind,
    # bench/README.md "Latency histogram").
    bounds = LATENCY_BUCKETS_MS
    counts = Counter(zip(map(itemgetter(0), timings),
                         map(bisect_left, repeat(bounds), map(itemgetter(1), timings)),
                         strict=True))
    per_name: dict[str, list[int]] = {}
    for (name, bucket), count in counts.items():
        if name.startswith(LATENCY_TIMER_PREFIX):
            per_bucket = per_name.get(name)
            if per_bucket is None:
                per_bucket = per_name[name] = [0] * (len(bounds) + 1)
            per_bucket[bucket] += count
    lines = []
    for name, per_bucket in per_name.items():
        stem = f"{prefix}http_latency.{name[len(LATENCY_TIMER_PREFIX):]}.le_"
        running = 0
        for label, count in zip(_LATENCY_LABELS, per_bucket, strict=True):
            running += count
            if running:
                lines.append(f"{stem}{label}:{running}|c")
    return lines


class BatchingStatsClient:
    """statsd client (``incr``/``timing``/``gauge``) that sends in batches.

    Same names and wire format per metric as the ``statsd`` package's
    ``StatsClient`` (``name:N|c``, ``name:0.123456|ms``, ``name:V|g``), so a
    statsd server sees the same sums and the same timer samples.
    Not locked: every caller runs in the worker's greenlets, which only
    switch on I/O (and a flush swaps the buffers before it sends).
    """

    def __init__(self, host: str, port: int, prefix: str = PREFIX):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._addr = (host, port)
        self._prefix = f"{prefix}." if prefix else ""
        self._counters: dict[str, int] = {}
        self._timings: list[tuple[str, float]] = []
        self._gauges: dict[str, float] = {}
        flushing.register(self.flush)

    def incr(self, name: str, count: int = 1) -> None:
        counters = self._counters
        counters[name] = counters.get(name, 0) + count

    def timing(self, name: str, ms: float) -> None:
        timings = self._timings
        timings.append((name, ms))
        if len(timings) >= MAX_PENDING:
            self.flush()

    def gauge(self, name: str, value: float) -> None:
        # Last value wins, as a statsd server keeps it.
        self._gauges[name] = value

    def flush(self) -> None:
        counters, self._counters = self._counters, {}
        timings, self._timings = self._timings, []
        gauges, self._gauges = self._gauges, {}
        if not (counters or timings or gauges):
            return
        p = self._prefix
        lines = [f"{p}{name}:{count}|c" for name, count in counters.items() if count]
        lines += [f"{p}{name}:{ms:0.6f}|ms" for name, ms in timings]
        lines += latency_histogram(timings, p)
        for name, value in gauges.items():
            if value < 0:  # a leading sign means a delta in statsd
                lines.append(f"{p}{name}:0|g")
            lines.append(f"{p}{name}:{value}|g")
        for data in packets(lines):
            try:
                self._sock.sendto(data, self._addr)
            except OSError:
                pass

    def close(self) -> None:
        self.flush()
        flushing.unregister(self.flush)
        self._sock.close()


def create(addr: tuple[str, int] | None, prefix: str = PREFIX) -> Metrics:
    if addr is None:
        return NULL_METRICS
    host, port = addr
    # Resolve once, here; never per send.
    host = str(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0])
    return BatchingStatsClient(host, port, prefix=prefix)


class GunicornStatsd(Statsd):
    """gunicorn's statsd logger (``logger_class`` in gunicorn.conf.py), batched.

    The per-request metrics (``gunicorn.requests``, ``gunicorn.request.
    status.<code>``, ``gunicorn.request.duration``) are aggregated like the
    app's and sent in the same line format gunicorn uses; everything else
    (worker gauges, log-level counters, all of the master's) is sent at once
    as before.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self._durations: list = []  # timedelta per request, converted at flush
        self._statuses: dict = {}  # resp.status (str, bytes or int) -> count
        flushing.register(self.flush)

    def debug(self, msg, *args, **kwargs):
        # PERF: gunicorn's default pre_request hook logs at debug on every
        # request; Statsd.debug runs its metric checks first (~1.5 us).
        if kwargs.get("extra") is not None or self.error_log.isEnabledFor(logging.DEBUG):
            super().debug(msg, *args, **kwargs)

    def access(self, resp, req, environ, request_time):
        if self.access_log_enabled:  # gunicorn's own access log, if configured
            Logger.access(self, resp, req, environ, request_time)
        durations = self._durations
        durations.append(request_time)
        statuses = self._statuses
        status = resp.status
        statuses[status] = statuses.get(status, 0) + 1
        if len(durations) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        durations, self._durations = self._durations, []
        statuses, self._statuses = self._statuses, {}
        if not durations or self.sock is None:
            return
        p = self.prefix
        codes: dict[int, int] = {}
        for status, count in statuses.items():
            if isinstance(status, bytes):
                status = status.decode("utf-8")
            if isinstance(status, str):
                status = int(status.split(None, 1)[0])
            codes[status] = codes.get(status, 0) + count
        lines = [f"{p}gunicorn.requests:{len(durations)}|c|@1.0"]
        lines += [f"{p}gunicorn.request.status.{code}:{count}|c|@1.0"
                  for code, count in codes.items()]
        lines += [f"{p}gunicorn.request.duration:"
                  f"{t.seconds * 1000 + float(t.microseconds) / 10 ** 3}|ms"
                  for t in durations]
        if self.dogstatsd_tags:
            tags = "|#" + self.dogstatsd_tags
            lines = [line + tags for line in lines]
        for data in packets(lines):
            try:
                self.sock.send(data)
            except OSError:
                pass


def route_name(method: str, template: str | None) -> str:
    """``GET /v1/products/{id}`` -> ``v1.products._id_.get`` (bounded cardinality)."""
    if not template:
        return f"unmatched.{method.lower()}"
    parts = [p.replace("{", "_").replace("}", "_") for p in template.strip("/").split("/") if p]
    return ".".join(parts + [method.lower()]) if parts else f"root.{method.lower()}"
