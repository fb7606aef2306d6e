import time


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def lock_waiters(dsn: str) -> int:
    """How many sessions of ``dsn``'s database wait on a lock right now."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def fresh_window(needed: float, window: int = 60) -> None:
    """Sleep into the next rate-limit window unless ``needed`` s are left of this one.

    The limits count in fixed windows of the wall clock (app/ratelimit.py):
    a test that must see N requests in one window fails when they straddle
    a boundary (eleven logins with password checks take seconds here).
    """
    import time

    left = window - time.time() % window
    if left < needed:
        time.sleep(left + 0.05)
