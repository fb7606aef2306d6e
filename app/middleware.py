"""Request-scoped plumbing: request ids, the request log line, metrics."""

from __future__ import annotations

import logging
import re
import time

from app import logs, tracing
from app.ids import new_request_id
from app.media import check_declared_length
from app.metrics import route_name

log = logging.getLogger("peregrine.request")

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestContext:
    """Give every request an id and a trace, time it, log it once and count it.

    A client's ``X-Request-ID`` is kept when it is 1-128 characters of
    ``[A-Za-z0-9._-]``; anything else is replaced, so ids cannot inject
    into logs. A valid ``traceparent`` is continued, anything else starts a
    new trace (app/tracing.py); the response names this server's span in
    its own ``traceparent``, with the caller's ``tracestate`` when
    well-formed.
    """

    def __init__(self, metrics):
        self._metrics = metrics
        # PERF: metric names per (method, route template, status), built once:
        # saves ~5 us per request. Capped, since some servers accept any method token.
        self._names: dict[tuple[str, str | None, int], tuple[str, str]] = {}

    def process_request(self, req, resp):
        request_id, trace_id, traceparent, tracestate = self.begin(req.env)
        context = req.context
        context.request_id = request_id
        context.trace_id = trace_id
        context.started = time.perf_counter()
        context.user = None
        resp.set_header("X-Request-ID", request_id)
        resp.set_header("traceparent", traceparent)
        if tracestate is not None:
            resp.set_header("tracestate", tracestate)
        # Refuse a declared oversized body before anything reads it.
        check_declared_length(req)

    def process_response(self, req, resp, resource, req_succeeded):
        started = getattr(req.context, "started", None)
        elapsed_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        user = req.context.user
        # Which route answered, for the record of a replayable answer (app/replay.py).
        req.env["peregrine.route"] = req.uri_template
        self.finish(req.method, req.uri_template, resp.status_code, elapsed_ms,
                    user.id if user is not None else None)

    def begin(self, env) -> tuple[str, str, str, str | None]:
        """Start a request: (request id, trace id, traceparent, tracestate or None).

        Also what the replayed answers use (app/replay.py). A replay that
        began the request and then left it to falcon stored what it began in
        ``env["peregrine.begun"]``: the same ids then, so that a line logged
        meanwhile names this request.
        """
        begun = env.pop("peregrine.begun", None)
        if begun is not None:
            return begun
        # PERF: the WSGI environ read directly; get_header() normalises the
        # name on every call (~1k instructions each, callgrind).
        incoming = env.get("HTTP_X_REQUEST_ID")
        if incoming is not None and _VALID_REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = new_request_id()
        trace_id, traceparent, continued = tracing.continue_trace(env.get("HTTP_TRACEPARENT"))
        tracing.current.set((request_id, trace_id, traceparent))
        # A tracestate only means something next to its traceparent.
        tracestate = tracing.clean_tracestate(env.get("HTTP_TRACESTATE")) if continued else None
        return request_id, trace_id, traceparent, tracestate

    def finish(self, method: str, template: str | None, status: int, elapsed_ms: float,
               user_id) -> None:
        """Count the request, log its line, end it (after :meth:`begin`)."""
        route = (method, template, status)
        names = self._names.get(route)
        if names is None:
            name = route_name(method, template)
            names = (f"http.{name}.{status}", f"http.{name}")
            if len(self._names) < 1024:
                self._names[route] = names
        counter, timer = names
        self._metrics.incr(counter)
        self._metrics.timing(timer, elapsed_ms)
        if log.isEnabledFor(logging.INFO):
            # PERF: encoded straight into the buffered stderr writer, not
            # through log.info(): ~44 -> ~1.5 us per line (app/logs.py).
            # PERF: int(x * 100 + 0.5) / 100 rounds a non-negative duration to
            # 0.01 ms like round(x, 2) (half up, not half even), ~2.5k fewer
            # instructions per request (callgrind).
            logs.request_line(method, template, status, int(elapsed_ms * 100 + 0.5) / 100,
                              user_id)
        tracing.current.set(None)
