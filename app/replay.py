"""Answer a repeated public read from the near cache, without the framework.

PERF: a ``GET /v1/products/{id}`` answered by the near cache still spent
~58k of its ~212k instructions in falcon's request and response objects,
the middleware chain, routing and the responder: more than the near-cache
hit itself. Replayed: 211.7k -> 154.0k instructions per request, a list
page 321.2k -> 235.3k (bench/instructions.py); one id, wrk -c64: 8,973 ->
13,911 req/s (bench/README.md, "Replayed reads").

**What is replayed.** A route declares ``replayable=True`` on its GET
(app/operations.py) when its 200 answer is a body read from the near cache
and nothing else: the catalog's cached reads. While serving such a request
in full, every near-cache entry the request read (a hit, or a value it then
kept) is noted in order, with its value. If the answer was a 200 whose body
*is* the value of the last entry noted, the request's ``(PATH_INFO,
QUERY_STRING)`` is remembered with those entries and falcon's header names.

The next GET of the same path and query is answered here when every entry
is still valid in the near cache with the same value (the body's entry: any
valid value), or when only the body's entry is not near and memcached holds
a fresh value for it (``ReadThrough.cached``: what the full path's read of
that key would answer, kept near the same way). Why that is the full path's
answer: the full path is a function of the path, the query and the values
it reads; it reads the same
entries in the same order (each key depends only on the path, the query and
the entries before it, e.g. a list page's key on the catalog generation),
gets the same values, and so returns that body. The near cache's own checks
(slot, epoch tag, lifetime: app/nearcache.py) decide validity for both paths
alike, and a memcached hit is the full path's own memcached hit, so a
replay is never older than what the full path would have served: the
contract's read-your-writes and 1 s promises are the near cache's and the
read-through cache's.

**What is not.** Anything the full path answers differently for the same
path and query: other methods (HEAD included), a declared or chunked body,
``If-None-Match`` (a 304), ``Origin`` when CORS is on, ``tracestate``; a
route with a per-address limit, or under the general rate limit while it is
on (every request then counts in memcached anyway). Those, and every miss,
take the full path (a memcached miss, stale record or outage too). The
request id, the trace, the request line and the metrics are made by the
same code as the full path's (app/middleware.py; a replay's duration is
the time it took, so replayed reads show in the latency histogram as the
fast requests they are), and the headers are falcon's, in falcon's order;
``tests/integration/test_replay.py`` compares the two byte for byte.

Memory: at most ``MAX_RECORDS`` records (oldest out first), each a path and
query of up to ``MAX_TARGET`` characters, the keys, and the values of the
entries before the body's (up to ``MAX_VALUE`` bytes each, e.g. a
generation), never a body: that is the near cache's. And as many targets
known to be answered by routes that are not replayable.
"""

from __future__ import annotations

import contextvars
import time

MAX_RECORDS = 4096
MAX_TARGET = 512
MAX_VALUE = 64

#: The near-cache entries read by the request being served in full, or None
#: when it is not being recorded. Greenlet-local, as contextvars are.
_noted: contextvars.ContextVar[list | None] = contextvars.ContextVar("replay_noted",
                                                                    default=None)

# Headers of a recorded answer: what each becomes when replayed.
_REQUEST_ID, _TRACEPARENT, _ETAG, _LENGTH, _CONSTANT = range(5)
_HEADER_KINDS = {"x-request-id": _REQUEST_ID, "traceparent": _TRACEPARENT, "etag": _ETAG,
                 "content-length": _LENGTH, "content-type": _CONSTANT, "vary": _CONSTANT}


def note(key: str, value: bytes, metric: str) -> None:
    """Say that the request read near-cache entry ``key`` as ``value``.

    Called after a near hit (and after keeping a value read further away),
    with the name whose ``cache.<metric>.near_hit`` a hit counts. A
    replayable route must do its near reads in the request's own greenlet:
    one spawned from it has its own (empty) context, so its reads would not
    be noted and the record would miss them.
    """
    noted = _noted.get()
    if noted is not None:
        noted.append((key, value, metric))


def _eligible(env, cors: bool) -> bool:
    """Whether the full path's answer depends only on the path and query (see above)."""
    return (env["REQUEST_METHOD"] == "GET"
            and not env.get("CONTENT_LENGTH")
            and "HTTP_TRANSFER_ENCODING" not in env
            and "HTTP_IF_NONE_MATCH" not in env
            and "HTTP_TRACESTATE" not in env
            and not (cors and "HTTP_ORIGIN" in env))


class Replay:
    """Records answers of replayable routes and answers their repeats.

    ``reads`` is the catalog's read-through cache (app/readthrough.py, with
    its near cache), ``context`` the request context middleware (its
    ``begin``/``finish`` make ids, the line and the metrics), ``templates``
    the routes that may be replayed, ``etag`` what gives a body its ETag
    (app.etags.etag_of, as the routes use).
    """

    def __init__(self, reads, context, metrics, templates, *, etag, cors: bool):
        self._etag = etag
        self._reads = reads
        self._context = context
        self._metrics = metrics
        self._templates = frozenset(templates)
        self._cors = cors
        self._records: dict[tuple[str, str], tuple] = {}
        #: Targets whose route is not replayable (insertion-ordered, bounded).
        self._plain: dict[tuple[str, str], bool] = {}

    def __call__(self, env, start_response, serve):
        """The answer to ``env``: replayed, or ``serve(env, start_response)``'s."""
        if not _eligible(env, self._cors):
            return serve(env, start_response)
        target = (env.get("PATH_INFO", ""), env.get("QUERY_STRING", ""))
        record = self._records.get(target)
        if record is not None:
            answer = self._replay(record, env, start_response)
            if answer is not None:
                return answer
        elif target in self._plain:
            # PERF: a route that is never replayed is not recorded each time.
            return serve(env, start_response)
        return self._record(target, record, env, start_response, serve)

    def _replay(self, record, env, start_response):
        template, entries, headers = record
        near = self._reads.near  # read each time: the catalog may be given another
        if near is None:
            return None
        get = near.get
        for key, value, _, _ in entries[:-1]:
            if get(key) != value:  # gone, expired, failed by a write, or changed
                return None
        started = time.perf_counter()
        body_key, _, body_metric, _ = entries[-1]
        body = get(body_key)
        counted = entries if body is not None else entries[:-1]
        if body is not None:
            begun = self._context.begin(env)
        else:
            # PERF: the body's entry expired (or was never kept by this
            # worker): what the full path would do on a fresh memcached hit,
            # without falcon (bench/README.md, "Replayed memcached hits").
            # Begun first: a log line written while memcached is asked is
            # this request's.
            begun = self._context.begin(env)
            body = self._reads.cached(body_key, body_metric)  # counts its hit
            if body is None:
                env["peregrine.begun"] = begun  # falcon's path goes on with these ids
                return None
        request_id, _, traceparent, _ = begun
        try:
            out = []
            for name, kind, value in headers:
                if kind == _REQUEST_ID:
                    value = request_id
                elif kind == _TRACEPARENT:
                    value = traceparent
                elif kind == _ETAG:
                    value = self._etag(body)
                elif kind == _LENGTH:
                    value = str(len(body))
                out.append((name, value))
            incr = self._metrics.incr
            for _, _, _, counter in counted:
                incr(counter)
        finally:
            # Logged and counted before start_response, as falcon's middleware
            # does; whatever happens, the request's trace ends here.
            self._context.finish("GET", template, 200,
                                 (time.perf_counter() - started) * 1000, None)
        start_response("200 OK", out)
        return [body]

    def _record(self, target, record, env, start_response, serve):
        captured = []

        def capture(status, headers, exc_info=None):
            captured.append((status, headers))
            return start_response(status, headers, exc_info)

        noted: list = []
        token = _noted.set(noted)
        try:
            result = serve(env, capture)
        finally:
            _noted.reset(token)
        if len(target[0]) + len(target[1]) > MAX_TARGET:
            return result  # not worth the memory of a record
        template = env.get("peregrine.route")  # the route that answered (app/middleware.py)
        if template not in self._templates:
            _bounded_add(self._plain, target)  # the path alone decides the route
        elif noted and captured and captured[-1][0] == "200 OK" and type(result) is list \
                and len(result) == 1 and result[0] is noted[-1][1]:
            self._remember(target, record, template, noted, captured[-1][1])
        elif record is not None:
            # PERF: answered otherwise now (a deleted product's 404): each
            # repeat would ask memcached for the old body first.
            self._records.pop(target, None)  # another greenlet may have dropped it
        return result

    def _remember(self, target, record, template, noted, headers) -> None:
        last = len(noted) - 1
        read = []
        for i, (key, value, metric) in enumerate(noted):
            if i < last and len(value) > MAX_VALUE:
                return
            # PERF: the hit counter's name made once, not on every replay.
            read.append((key, None if i == last else value, metric, f"cache.{metric}.near_hit"))
        entries = tuple(read)
        if record is not None and record[1] == entries:
            return  # the same entries again (the near one had expired)
        kinds = []
        seen = set()
        for name, value in headers:
            kind = _HEADER_KINDS.get(name.lower())
            if kind is None or (kind in seen and kind != _CONSTANT):
                return  # a header this module cannot make again
            seen.add(kind)
            kinds.append((name, kind, value if kind == _CONSTANT else None))
        records = self._records
        records.pop(target, None)
        while len(records) >= MAX_RECORDS:
            del records[next(iter(records))]
        records[target] = (template, entries, tuple(kinds))


def _bounded_add(known: dict, target) -> None:
    while len(known) >= MAX_RECORDS:
        del known[next(iter(known))]
    known[target] = True
