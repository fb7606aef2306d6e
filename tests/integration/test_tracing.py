"""W3C trace context end to end: response header, envelope, log lines, Postgres.

Against real gunicorn servers (both worker classes), the test Postgres, and
the app's own log buffer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid

import falcon
import falcon.testing
import psycopg2
import pytest

from app import db as app_db
from app import errors, logs, tracing
from app.middleware import RequestContext
from tests.support.http import raw_exchange, request
from tests.support.logs import buffered_app_log
from tests.unit.fakes import RecordingMetrics

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CALLER = f"00-{TRACE_ID}-{PARENT_ID}-01"
OURS = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])")


def log_entries(text: str) -> list[dict]:
    """Every line of a server's stderr, parsed: each one must be a JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(params=["peregrine", "gevent"])
def worker_class(request):
    return request.param


def test_a_callers_trace_is_continued_in_header_envelope_and_log(live_server_factory,
                                                                worker_class):
    server = live_server_factory(PEREGRINE_LOG_LEVEL="info", PEREGRINE_WORKER_CLASS=worker_class)
    answer = request(server.url + "/v1/no-such-route", headers={
        "traceparent": CALLER, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "X-Request-ID": "trace-test-1"})
    assert answer.status == 404
    ours = OURS.fullmatch(answer.headers["traceparent"])
    assert ours, answer.headers["traceparent"]
    assert ours[1] == TRACE_ID and ours[2] != PARENT_ID and ours[3] == "01"
    assert answer.headers["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert answer.json["trace_id"] == TRACE_ID
    assert answer.json["request_id"] == "trace-test-1"

    assert server.stop() == 0
    entries = log_entries(server.log())  # gunicorn's lines too: one format
    [line] = [e for e in entries if e.get("request_id") == "trace-test-1"]
    assert line["msg"] == "request" and line["status"] == 404
    assert line["trace_id"] == TRACE_ID
    # gunicorn's own lines, in the app's shape, and in the order they happened.
    gunicorn = [e for e in entries if e["logger"] == "gunicorn.error"]
    assert {"ts", "level", "msg", "pid"} <= set(gunicorn[0])
    messages = [e["msg"] for e in gunicorn]
    assert any(m.startswith("Booting worker") for m in messages)
    assert any(m.startswith("Worker exiting") for m in messages)
    worker_lines = [e for e in entries if e["pid"] == line["pid"]]
    assert worker_lines[-1]["msg"].startswith("Worker exiting")


BAD_TRACEPARENTS = [
    "garbage",
    f"ff-{TRACE_ID}-{PARENT_ID}-01",                  # version ff
    f"00-{'0' * 32}-{PARENT_ID}-01",                  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",                   # all-zero parent id
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-01-" + "x" * 4000,    # oversized
    f"00-{TRACE_ID}-{PARENT_ID}-01,{CALLER}",         # sent twice
]


def test_a_bad_traceparent_gets_a_new_trace_never_an_error(live_server_factory, worker_class):
    server = live_server_factory(PEREGRINE_WORKER_CLASS=worker_class)
    for traceparent in BAD_TRACEPARENTS:
        answer = request(server.url + "/healthz", headers={
            "traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE"})
        assert answer.status == 200, traceparent
        ours = OURS.fullmatch(answer.headers["traceparent"])
        assert ours and ours[1] != TRACE_ID and ours[3] == "00", traceparent
        # A tracestate belongs to its traceparent: without a valid one it is dropped.
        assert "tracestate" not in answer.headers, traceparent


def test_the_worker_s_own_error_envelope_names_a_new_trace(live_server):
    # A request the HTTP layer cannot read is answered by the worker itself.
    answer = raw_exchange(live_server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
                          b"traceparent: " + CALLER.encode() + b"\r\nBad Header: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    traceparent = re.search(rb"(?im)^traceparent: (\S+)\r?$", head)[1].decode()
    assert OURS.fullmatch(traceparent)
    envelope = json.loads(body)
    assert envelope["trace_id"] == traceparent.split("-")[1] != TRACE_ID
    assert envelope["request_id"]


def test_a_request_without_traceparent_starts_a_trace(live_server_factory):
    server = live_server_factory()
    first = request(server.url + "/v1/products/not-an-id")
    second = request(server.url + "/v1/products/not-an-id")
    assert first.status == second.status == 404
    ids = [OURS.fullmatch(r.headers["traceparent"])[1] for r in (first, second)]
    assert ids[0] != ids[1]
    assert [first.json["trace_id"], second.json["trace_id"]] == ids


def test_the_trace_reaches_postgres_with_the_request_s_statements(live_server_factory, db):
    server = live_server_factory()
    answer = request(server.url + f"/v1/products/{uuid.uuid4()}",
                     headers={"traceparent": CALLER})
    assert answer.status == 404  # looked up in Postgres: no such product
    ours = answer.headers["traceparent"]
    # An idle backend shows its last statement: the app's, with our span in front.
    with db.cursor() as cur:
        cur.execute("SELECT query FROM pg_stat_activity WHERE application_name LIKE 'peregrine-%%'"
                    " AND query LIKE %s", (f"/* traceparent='{ours}' */ %",))
        rows = cur.fetchall()
    assert rows, "no statement of the request carried its traceparent"


def test_a_held_query_shows_its_traceparent_in_pg_stat_activity(postgres, db):
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    done = threading.Event()
    failures = []

    def slow_request():
        token = tracing.current.set(("held", TRACE_ID, traceparent))
        conn = psycopg2.connect(postgres.dsn(), cursor_factory=app_db.TracedCursor,
                                application_name="peregrine-trace-test")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(%s)", (3,))
        except Exception as ex:  # noqa: BLE001 - reported by the test below
            failures.append(ex)
        finally:
            conn.close()
            tracing.current.reset(token)
            done.set()

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        seen = None
        deadline = time.monotonic() + 2.5
        while seen is None and time.monotonic() < deadline:
            with db.cursor() as cur:
                cur.execute("SELECT state, query FROM pg_stat_activity"
                            " WHERE application_name = 'peregrine-trace-test'")
                row = cur.fetchone()
            if row and row[0] == "active":
                seen = row[1]
            time.sleep(0.05)
        assert seen == f"/* traceparent='{traceparent}' */ SELECT pg_sleep(3)"
    finally:
        thread.join(10)
    assert done.is_set() and not failures


def test_statements_outside_a_request_go_out_unchanged(postgres):
    conn = psycopg2.connect(postgres.dsn(), cursor_factory=app_db.TracedCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_query()")
            assert cur.fetchone()[0] == "SELECT current_query()"
            token = tracing.current.set(("r", TRACE_ID, CALLER))
            try:
                cur.execute(b"SELECT current_query()")
                assert cur.fetchone()[0] == f"/* traceparent='{CALLER}' */ SELECT current_query()"
                cur.executemany("SELECT %s", [(1,), (2,)])
            finally:
                tracing.current.reset(token)
    finally:
        conn.close()


class Logs:
    """A resource that logs while it handles the request."""

    def on_get(self, req, resp):
        logging.getLogger("peregrine.test").info("handling")
        raise errors.NotFound()


@pytest.fixture
def buffered_log(monkeypatch):
    with buffered_app_log(monkeypatch) as stream:
        yield stream


def test_app_log_lines_of_a_request_carry_its_trace_id(buffered_log):
    app = falcon.App(middleware=[RequestContext(RecordingMetrics())])
    errors.register(app)
    app.add_route("/logs", Logs())
    result = falcon.testing.TestClient(app).simulate_get(
        "/logs", headers={"traceparent": CALLER, "X-Request-ID": "in-process"})
    assert result.status_code == 404 and result.json["trace_id"] == TRACE_ID
    logs._buffer.flush()
    entries = log_entries(buffered_log.getvalue().decode())
    assert [(e["msg"], e["request_id"], e["trace_id"]) for e in entries] == [
        ("handling", "in-process", TRACE_ID), ("request", "in-process", TRACE_ID)]
    assert tracing.current.get() is None  # nothing leaks into the next request
