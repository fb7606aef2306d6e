# gunicorn configuration for Peregrine (`peregrine serve` loads it as
# python:app.gunicorn_conf; ./gunicorn.conf.py re-exports it).
#
# This file runs in the gunicorn MASTER process. It must not import gevent,
# psycopg2 or the application: the gevent worker monkey-patches itself after
# the fork, and anything imported earlier would keep unpatched sockets and
# locks. Only app.config (pure Python, no I/O) is imported here, so a bad
# environment variable stops the master with a clear message, and
# app.nearcache (stdlib only): its shared-memory slot table must be created
# in the master so that every worker forked from it, recycled or reloaded,
# maps the same one (the near cache's same-node invalidation). gunicorn
# also loads logger_class, app.gunicorn_log (app.logs, app.metrics:
# msgspec, socket and gunicorn only, no gevent), in the master.
#
# Every setting that matters can be changed with a PEREGRINE_* variable (see
# README.md); the rest are fixed here with the reason beside them.

import app.nearcache  # noqa: F401 - the slot table, created here so every worker shares it
from app.config import Config

_config = Config.from_env()

#
# Server socket
#
#   bind - where to listen. Production binds a unix socket or loopback only:
#          nginx in front buffers slow clients (slowloris) and bodies.
#   backlog - pending connections the kernel queues for us.

bind = [_config.bind]
backlog = 2048

#
# Worker processes
#
#   workers - one per core: gevent serves concurrency inside each worker.
#   worker_class - hotpath.worker.GeventHTTPWorker: gevent's cooperative
#          model with the request loop parsed by llhttp (~3x the stock
#          worker's requests/s, see bench/README.md). PEREGRINE_WORKER_CLASS
#          picks another, e.g. "gevent" for gunicorn's stock worker.
#   worker_connections - greenlets per worker. The database pool, not this,
#          bounds concurrent queries; requests over it wait up to
#          PEREGRINE_DB_POOL_TIMEOUT and then get 503.
#   timeout - for gevent workers only a heartbeat: a worker whose event loop
#          is blocked this long is killed. It never bounds the app's work;
#          the pool, statement and cache timeouts do. hotpath.worker also
#          gives a request body this many seconds of waiting in all (a body
#          trickled slower gets 408 and the connection closes) and each
#          blocked write this long; 0 turns both off.
#   graceful_timeout - on TERM, in-flight requests get this long to finish.
#          systemd's TimeoutStopSec must be larger.
#   keepalive - seconds an idle keep-alive connection stays open; also the
#          bound on reading request headers (slow clients).
#   max_requests / max_requests_jitter - recycle a worker now and then as
#          insurance against slow leaks; jitter staggers the restarts.
#          PERF: a recycle costs one worker 0.5-0.7 s of serving (drain,
#          exit, fork, boot) and 0.15-0.6 s of CPU (mostly the new worker's
#          imports), however many requests it served. At 20000 (+0-5000)
#          that was every 1-2 s at /healthz rates: one worker served 4.6k
#          req/s instead of 7.2k with log+statsd before this change, and
#          9.9k instead of 13.2k after it (bench/README.md, "Logging,
#          metrics and recycling"; hotpath/worker.py now exits ~0.1 s after
#          the last request instead of ~1 s). At 1M (+0-500k) a worker busy
#          at 20k req/s recycles every 50-75 s: <= 1.4 % of its serving
#          time and <= 1.2 % of its CPU. A busy day still recycles each
#          worker many times, and a leak of 1 KiB per request stays under
#          ~1.5 GiB before the recycle. Leaks grow per request, so a count
#          (not a time) is the right unit.
#   preload_app - never with gevent: the app must be imported after the
#          worker patched the standard library.

workers = _config.workers
worker_class = _config.worker_class
worker_connections = _config.worker_connections
timeout = 30
graceful_timeout = 25
keepalive = 5
max_requests = 1_000_000
max_requests_jitter = 500_000
preload_app = False

#
# Request limits (request-smuggling and header-bomb hardening; bodies are
# limited by the application to 64 KiB and by nginx).

limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

#
# Logging
#
#   The application writes one JSON line per request, so gunicorn's access
#   log is off; its error log goes to stderr (journald under systemd), in
#   the application's JSON shape (app/gunicorn_log.py): one log format.

accesslog = None
errorlog = "-"
loglevel = _config.log_level
proc_name = "peregrine"
logger_class = "app.gunicorn_log.JsonLogger"

# gunicorn >= 25 opens a control socket at one per-user default path, where
# several instances on a host (tests, side-by-side apps) would collide. The
# service is managed with signals and systemd, so it stays off.
control_socket_disable = True

#
# Metrics
#
#   gunicorn's own instrumentation (workers, request rate) next to the
#   application's per-route metrics.

if _config.statsd_addr is not None:
    statsd_host = "{}:{:d}".format(*_config.statsd_addr)
    statsd_prefix = "peregrine.gunicorn"
    # PERF: gunicorn's Statsd logger, but the three per-request metrics are
    # summed/batched in the worker like the app's (app/metrics.py): three
    # datagrams per request cost ~13 us of worker CPU. Same names and lines.
    # (app.metrics.GunicornStatsd, with the JSON error log.)
    logger_class = "app.gunicorn_log.JsonStatsdLogger"

# Seconds between flushes of the buffered request log and statsd batches
# (app/flushing.py): how late a line or a metric may leave a quiet worker.
FLUSH_INTERVAL = 0.25

#
# Server hooks
#


def when_ready(server):
    """Ctrl-C (SIGINT) stops as gracefully as SIGTERM does.

    gunicorn's SIGINT is a quick stop: SIGQUIT to the workers, whose gevent
    handler calls sys.exit() from a greenlet and, racing the interpreter's
    shutdown, prints a SystemExit traceback. In a terminal (`make run`) every
    process of the group gets the SIGINT; both the master (here) and the
    workers (post_worker_init) then take the graceful path: in-flight requests
    finish within graceful_timeout. SIGQUIT stays the quick stop.
    """
    server.handle_int = server.handle_term


def post_fork(server, worker):
    """Make psycopg2 cooperative in the worker, before any connection opens."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def post_worker_init(worker):
    """Refuse to serve unless the worker really is green."""
    import gevent.monkey
    import psycopg2.extensions

    if worker_class.startswith("gevent") or "Gevent" in worker_class:
        if not gevent.monkey.is_module_patched("socket"):
            raise RuntimeError("gevent did not patch the socket module")
    if psycopg2.extensions.get_wait_callback() is None:
        raise RuntimeError("psycopg2 is not green: psycogreen's wait callback is missing")
    worker.log.info("worker %s ready: gevent patched, psycopg2 green", worker.pid)
    import signal

    signal.signal(signal.SIGINT, worker.handle_exit)  # graceful, see when_ready
    if gevent.monkey.is_module_patched("socket"):
        from app import flushing

        flushing.start(FLUSH_INTERVAL)


def worker_exit(server, worker):
    """Close pooled connections; write out buffered log lines and metrics.

    Runs after the worker's graceful shutdown (SIGTERM, max_requests) has
    let its requests finish, so no request line is lost.
    """
    import sys

    module = sys.modules.get("app.wsgi")
    try:
        if module is not None:
            module.application.deps.close()
    finally:
        flushing = sys.modules.get("app.flushing")
        if flushing is not None:
            flushing.flush_all()
