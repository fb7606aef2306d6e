"""The Postgres pool against a real server."""

import time

import gevent
import psycopg2
import pytest
from psycogreen.gevent import patch_psycopg

from app.db import Pool
from app.errors import DatabaseUnavailable, QueryTimeout


@pytest.fixture(autouse=True, scope="module")
def green_psycopg2():
    """Cooperative psycopg2 here as in the workers, so greenlets overlap."""
    import psycopg2.extensions

    previous = psycopg2.extensions.get_wait_callback()
    patch_psycopg()
    yield
    psycopg2.extensions.set_wait_callback(previous)


def backends(admin_conn, application_name):
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (application_name,))
        return cur.fetchone()[0]


def test_pool_never_opens_more_than_its_size(postgres, db):
    pool = Pool(postgres.dsn(), size=3, timeout=5, application_name="pool-size-test")
    in_flight, peak = 0, 0

    def work():
        nonlocal in_flight, peak
        with pool.connection() as conn, conn.cursor() as cur:
            in_flight += 1
            peak = max(peak, in_flight)
            cur.execute("SELECT pg_sleep(0.05)")
            in_flight -= 1

    observed = []

    def watch():
        for _ in range(30):
            observed.append(backends(db, "pool-size-test"))
            gevent.sleep(0.01)

    watcher = gevent.spawn(watch)
    gevent.joinall([gevent.spawn(work) for _ in range(20)], raise_error=True)
    watcher.join()
    assert peak == 3, "greenlets did not overlap or the pool let too many through"
    assert max(observed) <= 3
    pool.close()


def test_exhausted_pool_raises_unavailable_within_its_timeout(postgres):
    pool = Pool(postgres.dsn(), size=2, timeout=0.3)
    held = [pool.acquire(), pool.acquire()]
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    waited = time.monotonic() - started
    assert 0.3 <= waited < 0.8
    for conn in held:
        pool.release(conn)
    with pool.connection() as conn:  # a slot is free again
        assert not conn.closed
    pool.close()


def test_waiter_gets_a_connection_released_before_its_timeout(postgres):
    pool = Pool(postgres.dsn(), size=1, timeout=2)
    conn = pool.acquire()
    gevent.spawn_later(0.1, pool.release, conn)
    started = time.monotonic()
    with pool.connection():
        assert time.monotonic() - started < 1.0
    pool.close()


def test_connection_killed_mid_query_is_discarded_and_its_work_rolled_back(postgres, db):
    pool = Pool(postgres.dsn(), size=1, timeout=1)
    with db.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
        cur.execute("TRUNCATE pool_probe")
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.1):
            with pool.transaction() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO pool_probe VALUES (1)")
                cur.execute("SELECT pg_sleep(2)")
    assert pool.idle_count == 0, "a connection cut mid-query went back to the pool"
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pool_probe")
        assert cur.fetchone()[0] == 0
    pool.close()
    with db.cursor() as cur:
        cur.execute("DROP TABLE pool_probe")


def test_sql_error_keeps_the_connection_and_rolls_back(postgres):
    pool = Pool(postgres.dsn(), size=1, timeout=1)
    with pytest.raises(psycopg2.errors.DivisionByZero):
        with pool.transaction() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1/0")
    assert pool.idle_count == 1
    with pool.connection() as conn:
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    pool.close()


def test_statement_timeout_maps_to_query_timeout_and_connection_survives(postgres):
    pool = Pool(postgres.dsn(), size=1, timeout=1, statement_timeout_ms=100)
    with pytest.raises(QueryTimeout):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(1)")
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    pool.close()


def test_connections_carry_server_side_time_bounds(postgres):
    pool = Pool(postgres.dsn(), size=1, statement_timeout_ms=1234, lock_timeout_ms=567,
                idle_in_transaction_timeout_ms=8910, application_name="bounds-test")
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "1234ms"
        cur.execute("SHOW lock_timeout")
        assert cur.fetchone()[0] == "567ms"
        cur.execute("SHOW idle_in_transaction_session_timeout")
        assert cur.fetchone()[0] == "8910ms"
        cur.execute("SHOW application_name")
        assert cur.fetchone()[0] == "bounds-test"
    pool.close()


def test_unreachable_database_fails_fast_with_unavailable():
    from tests.support.processes import free_port

    pool = Pool(f"postgresql://nobody@127.0.0.1:{free_port()}/none", size=1,
                timeout=1, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    assert time.monotonic() - started < 2
    # The failed connect gave its slot back.
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()


def test_idle_connections_closed_by_a_server_restart_are_replaced(postgres):
    pool = Pool(postgres.dsn(), size=2, timeout=2)
    with pool.connection():
        pass
    assert pool.idle_count == 1
    postgres.restart()
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    pool.close()


def test_an_idle_connection_whose_backend_ended_is_not_handed_out(postgres, db):
    pool = Pool(postgres.dsn(), size=2, timeout=5, application_name="pool-hangup-test")
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        first_pid = cur.fetchone()[0]
    with db.cursor() as cur:  # the server ends the backend of the now idle connection
        cur.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
    deadline = time.monotonic() + 5
    while backends(db, "pool-hangup-test"):
        assert time.monotonic() < deadline, "the backend did not end"
        time.sleep(0.05)
    with pool.connection() as conn, conn.cursor() as cur:  # no error: a fresh one
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != first_pid
    pool.close()


def test_a_connection_released_goes_to_the_waiting_greenlet_before_the_releaser_asks_again(
        postgres):
    # A request that makes two queries releases and asks again at once; the
    # request that was waiting meanwhile gets the connection first.
    pool = Pool(postgres.dsn(), size=1, timeout=2)
    order = []

    def waiting_request():
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            order.append("waiting request")

    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        waiter = gevent.spawn(waiting_request)
        gevent.sleep(0.05)  # it is in line
    with pool.connection() as conn, conn.cursor() as cur:  # no yield since the release
        cur.execute("SELECT 1")
        order.append("second query")
    waiter.get(timeout=2)
    assert order == ["waiting request", "second query"]
    pool.close()


def test_sixty_four_greenlets_through_ten_connections_none_waits_out_its_timeout(postgres):
    pool = Pool(postgres.dsn(), size=10, timeout=2)
    done = []

    def request(n):
        for _ in range(30):
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT %s", (n,))
                assert cur.fetchone() == (n,)
        done.append(n)

    gevent.joinall([gevent.spawn(request, n) for n in range(64)], raise_error=True)
    assert sorted(done) == list(range(64))
    assert pool.idle_count == 10
    pool.close()


def test_an_ahead_checkout_is_served_before_the_checkouts_already_waiting(postgres):
    pool = Pool(postgres.dsn(), size=1, timeout=5)
    served = []

    def request(name, ahead=False):
        with pool.connection(ahead=ahead) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            served.append(name)

    with pool.connection():
        line = [gevent.spawn(request, "first"), gevent.spawn(request, "second")]
        gevent.sleep(0.05)  # both are in line
        line.append(gevent.spawn(request, "ahead", ahead=True))
        gevent.sleep(0.05)
    gevent.joinall(line, raise_error=True)
    assert served == ["ahead", "first", "second"]
    pool.close()


def second_checkout(pool, late_work):
    """Hold ``pool``'s one connection, queue three requests, then run ``late_work``.

    Returns the greenlet that ran ``late_work`` and whether it had the
    connection right after the holder, before the requests that queued first.
    """
    checkouts = []
    acquire = pool.acquire

    def recording_acquire(*, ahead=False):
        conn = acquire(ahead=ahead)
        checkouts.append(gevent.getcurrent())
        return conn

    pool.acquire = recording_acquire

    def request():
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    with pool.connection():
        requests = [gevent.spawn(request) for _ in range(3)]
        gevent.sleep(0.05)
        late = gevent.spawn(late_work)
        gevent.sleep(0.05)
    gevent.joinall([*requests, late], raise_error=True)
    return late, checkouts[1] is late  # checkouts[0]: the holder


def test_the_invalidation_rounds_wal_position_read_goes_ahead_of_waiting_requests(
        postgres, memcached, cache_flushed):
    # Every writer of an invalidation round waits for it to answer; behind
    # the requests already waiting for a connection it would wait as long as
    # each of them does, and they would wait twice.
    from app.cache import Cache
    from app.replicas import LSN_KEY, Replicas

    pool = Pool(postgres.dsn(), size=1, timeout=5)
    cache = Cache([("127.0.0.1", memcached.port)], timeout=1)
    round_, went_ahead = second_checkout(pool, Replicas(pool, cache).wrote)
    assert round_.value == [], "the mark was not raised"
    assert cache.get(LSN_KEY).isdigit()
    assert went_ahead, "the round waited behind the requests"
    cache.close()
    pool.close()


def test_the_cache_epoch_poll_goes_ahead_of_waiting_requests(postgres, db):
    # A writer that lost an invalidation answers a poll interval (+ 0.1 s)
    # after bumping the epoch; a sibling's poll queued behind the requests
    # waiting for a connection could come later than that.
    from app.cache_epochs import Epochs

    pool = Pool(postgres.dsn(), size=1, timeout=5)
    epochs = Epochs(pool, interval=60)
    epochs.watch(["127.0.0.1:1"])
    poll, went_ahead = second_checkout(pool, epochs.refresh)
    assert poll.value is True
    assert went_ahead, "the poll waited behind the requests"
    pool.close()
