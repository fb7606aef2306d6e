"""A bounded, gevent-safe Postgres connection pool.

psycopg2's own pools raise at once when exhausted; this one waits up to
``timeout`` seconds and then raises :class:`~app.errors.DatabaseUnavailable`
(503 + Retry-After). It never hands out a connection that may be broken:

* connections are checked out by one greenlet at a time and never shared;
* on return, a connection that is closed, in an unknown transaction state,
  or left mid-transaction and failing to roll back is discarded;
* a checkout that ends with an exception other than an ordinary SQL error
  (OperationalError, InterfaceError, gevent.Timeout, GreenletExit, ...) closes
  the connection instead of returning it;
* an idle connection whose socket is readable was closed by the server (e.g.
  a Postgres restart) and is discarded at checkout, as is one past its
  lifetime.

Every connection carries server-side time bounds (statement, lock and
idle-in-transaction timeouts) and TCP keepalives so no query can hang a
request for longer than the configured budget.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import time
from typing import Any

import gevent
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from gevent.monkey import get_original

from app import tracing
from app.errors import DatabaseUnavailable, QueryTimeout, ValidationFailed
from app.metrics import NULL_METRICS, Metrics
from app.slots import Slots

log = logging.getLogger(__name__)

# psycopg2's ValueError when a str parameter holds U+0000.
_NUL_IN_TEXT = "cannot contain NUL (0x00)"

_STATUS_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_STATUS_UNKNOWN = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN


class PoolExhausted(DatabaseUnavailable):
    """Every connection of the pool stayed checked out for the whole wait."""


class PooledConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that remembers when it was opened."""

    created_at: float = 0.0
    # On a standby: the replay position this connection last saw. Replay only
    # moves forward while the server runs, and no connection outlives a
    # restart, so it is a lower bound of what every later query here sees.
    replayed: int = 0


class TracedCursor(psycopg2.extensions.cursor):
    """A cursor whose statements begin with the request's traceparent, as a comment.

    ``/* traceparent='00-<trace id>-<span id>-<flags>' */ SELECT ...`` is the
    text pg_stat_activity shows and log_min_duration_statement logs, so a
    slow query leads back to its request and that request's log lines.

    A comment costs no round trip: psycopg2 has no server-side prepare and
    sends every statement as text, so this is a string concatenation before
    the send. ``SET application_name`` per request would be one more round
    trip each, so application_name stays what it is free to be: set once
    per connection, at connect. Leading, because pg_stat_activity cuts a
    statement at track_activity_query_size. The traceparent comes from
    app/tracing.py, which makes it of hex digits and dashes only: it can
    neither close the comment nor add a ``%`` placeholder. Outside a request
    (CLI, background greenlets) statements go out unchanged.
    PERF: ~1.6k instructions per statement (callgrind; the base class's
    execute called directly, not through super()), a fraction of a
    microsecond against a query's round trip of ~100 us or more.
    """

    def execute(self, query, vars=None):
        request = _current_request()
        if request is not None:
            if type(query) is str:
                query = f"/* traceparent='{request[2]}' */ {query}"
            else:
                query = _traced(query, request[2])
        return _execute(self, query, vars)

    def executemany(self, query, vars_list):
        request = _current_request()
        if request is not None:
            query = _traced(query, request[2])
        return _executemany(self, query, vars_list)


_current_request = tracing.current.get
_execute = psycopg2.extensions.cursor.execute
_executemany = psycopg2.extensions.cursor.executemany


def _traced(query, traceparent: str):
    if type(query) is str:
        return f"/* traceparent='{traceparent}' */ {query}"
    if type(query) is bytes:
        return f"/* traceparent='{traceparent}' */ ".encode() + query
    return query  # a psycopg2.sql object: composed against the connection later


class Pool:
    """Hand out at most ``size`` Postgres connections, waiting up to ``timeout``."""

    def __init__(
        self,
        dsn: str,
        *,
        size: int = 10,
        timeout: float = 1.0,
        connect_timeout: float = 3.0,
        max_lifetime: float = 1800.0,
        statement_timeout_ms: int = 5000,
        lock_timeout_ms: int = 2000,
        idle_in_transaction_timeout_ms: int = 10000,
        application_name: str | None = None,
        metrics: Metrics = NULL_METRICS,
    ):
        self.dsn = dsn
        self.size = size
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_lifetime = max_lifetime
        self.metrics = metrics
        self._idle: collections.deque[PooledConnection] = collections.deque()
        # Counts connections checked out (or being opened), handed to waiters
        # in the order they came (app/slots.py). Idle ones only exist because
        # they were once checked out, so open connections never exceed ``size``.
        self._slots = Slots(size)
        self._connect_kwargs: dict[str, Any] = {
            "connection_factory": PooledConnection,
            "cursor_factory": TracedCursor,
            "application_name": application_name or f"peregrine-{os.getpid()}",
            # psycogreen makes libpq asynchronous, and then libpq ignores
            # connect_timeout; it is enforced with gevent.Timeout below too.
            "connect_timeout": max(1, int(connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 15000,
            "options": (
                f"-c statement_timeout={statement_timeout_ms}"
                f" -c lock_timeout={lock_timeout_ms}"
                f" -c idle_in_transaction_session_timeout={idle_in_transaction_timeout_ms}"
            ),
        }

    # -- checkout ---------------------------------------------------------

    def acquire(self, *, ahead: bool = False) -> PooledConnection:
        """A connection; ``ahead``: before the checkouts already waiting (app/slots.py)."""
        started = time.monotonic()
        if not self._slots.acquire(self.timeout, ahead=ahead):
            self.metrics.incr("db.pool.timeout")
            raise PoolExhausted("no database connection became free in time")
        conn = None
        try:
            conn = self._take_idle() or self._connect()
            # Inside: a metrics flush may switch greenlets, and an exception
            # thrown in then must not keep the slot or the connection.
            self.metrics.timing("db.pool.wait_ms", (time.monotonic() - started) * 1000)
        except BaseException:
            if conn is not None:
                self._close(conn)
            self._slots.release()
            raise
        return conn

    def release(self, conn: PooledConnection, *, discard: bool = False) -> None:
        try:
            if discard or not self._reusable(conn):
                self._close(conn)
            else:
                self._idle.append(conn)
        finally:
            self._slots.release()

    def connection(self, *, ahead: bool = False) -> _Checkout:
        """Check out a connection (autocommit mode) for the ``with`` block.

        ``ahead``: for work that the waiting requests themselves wait on
        (one query for many of them), which must not queue behind them.
        """
        return _Checkout(self, ahead)

    @contextlib.contextmanager
    def transaction(self):
        """Run the ``with`` block in one transaction: commit on success, else roll back.

        The rollback happens in :meth:`release`, which finds the connection
        still in a transaction; a commit is only ever issued on success.
        """
        with self.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                yield conn
                cur.execute("COMMIT")

    def connect_dedicated(self, application_name: str) -> PooledConnection:
        """A new autocommit connection outside the pool, for a session of its own (LISTEN).

        The pool's settings and timeouts; the caller closes it.
        """
        return self._connect(application_name=application_name)

    def close(self) -> None:
        while self._idle:
            self._close(self._idle.popleft())

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    # -- internals --------------------------------------------------------

    def _take_idle(self) -> PooledConnection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # LIFO keeps the hot connections warm
            if now - conn.created_at > self.max_lifetime or _server_closed(conn):
                self._close(conn)
                continue
            return conn
        return None

    def _connect(self, **overrides) -> PooledConnection:
        try:
            with gevent.Timeout(self.connect_timeout):
                conn = psycopg2.connect(self.dsn, **{**self._connect_kwargs, **overrides})
        except gevent.Timeout:
            self.metrics.incr("db.connect.error")
            raise DatabaseUnavailable("the database did not answer in time") from None
        except psycopg2.Error as ex:
            self.metrics.incr("db.connect.error")
            log.warning("database connect failed: %s", str(ex).strip())
            raise DatabaseUnavailable("the database is unavailable") from ex
        conn.autocommit = True  # PERF: reads need no BEGIN/ROLLBACK round trips
        conn.created_at = time.monotonic()
        return conn

    @staticmethod
    def _reusable(conn: PooledConnection) -> bool:
        if conn.closed:
            return False
        status = conn.info.transaction_status
        if status == _STATUS_IDLE:
            return True
        if status == _STATUS_UNKNOWN:
            return False
        try:  # left in a transaction: roll back, or give up on it
            # NOTE: conn.rollback() is a no-op in autocommit mode, so say it in SQL.
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")
            return conn.info.transaction_status == _STATUS_IDLE
        except psycopg2.Error:
            return False

    @staticmethod
    def _close(conn: PooledConnection) -> None:
        with contextlib.suppress(Exception):
            conn.close()



class _Checkout:
    """``with pool.connection() as conn``: one connection, returned whatever happens.

    * an SQL error leaves the connection to :meth:`Pool.release`, which
      discards it if the error broke it; errors that mean "try later" are
      translated to domain errors (:func:`_translate`);
    * a ValueError was raised while adapting parameters, so nothing was
      sent; a NUL in a text parameter is the client's input, a 422;
    * any other Exception is the application's: release() rolls back;
    * a BaseException (gevent.Timeout, GreenletExit) may have cut a query
      short, leaving the protocol mid-flight: the connection is closed
      rather than returned.

    PERF: a class, not a @contextmanager generator: no generator frame and
    no contextlib wrapper per checkout (~1 us of the ~100 us of GET
    /v1/users/me under load; bench/README.md "GET /v1/users/me: verified
    tokens, pool slots in order").
    """

    __slots__ = ("_pool", "_ahead", "_conn")

    def __init__(self, pool: Pool, ahead: bool = False):
        self._pool = pool
        self._ahead = ahead
        self._conn: PooledConnection | None = None

    def __enter__(self) -> Any:  # a PooledConnection; its cursors go to untyped queries
        self._conn = conn = self._pool.acquire(ahead=self._ahead)
        return conn

    def __exit__(self, exc_type, ex, tb) -> None:
        conn = self._conn
        self._conn = None
        assert conn is not None
        if exc_type is None or issubclass(exc_type, Exception):
            translated = _translate(ex, conn) if isinstance(ex, psycopg2.Error) else ex
            self._pool.release(conn)
        else:
            self._pool.release(conn, discard=True)
            return
        if translated is not ex:
            raise translated from ex
        if isinstance(ex, ValueError) and _NUL_IN_TEXT in str(ex):
            # Postgres text cannot hold U+0000; whatever field carried it
            # (body, query string), it is the client's input that is bad.
            raise ValidationFailed("text must not contain NUL (\\u0000) characters") from None


# PERF: the C poll(2), not gevent's cooperative select.select (one poll, then
# watchers built in Python): ~3.6k instead of ~16.2k instructions for each
# connection handed out (callgrind, an idle socket). Timeout 0: it never blocks.
_poll = get_original("select", "poll")


def _server_closed(conn: PooledConnection) -> bool:
    """True when an idle connection's socket is readable, i.e. the server hung up.

    An idle backend sends nothing unless it is terminating (or we LISTEN,
    which Peregrine never does), so readable means dead.
    """
    if conn.closed:
        return True
    try:
        poller = _poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))  # readable, or hung up (POLLHUP/POLLERR always report)
    except (OSError, ValueError):
        return True


def _translate(ex: psycopg2.Error, conn: PooledConnection) -> Exception:
    """Map driver errors that mean "try later" to domain errors.

    Deadlocks and serialization failures pass through unchanged: the caller
    that knows the transaction is safe to repeat retries them.
    """
    if conn.closed or conn.info.transaction_status == _STATUS_UNKNOWN:
        return DatabaseUnavailable("the database connection was lost")
    if isinstance(ex, psycopg2.errors.QueryCanceled):
        return QueryTimeout("the database took too long to answer")
    if isinstance(ex, psycopg2.errors.LockNotAvailable):
        return QueryTimeout("the data is busy; try again")
    if isinstance(ex, psycopg2.errors.NumericValueOutOfRange):
        # Input that passed validation but not the column (e.g. an order
        # total beyond numeric(14,2)): the client's data, not our bug.
        return ValidationFailed("a value is out of range for what can be stored")
    return ex
