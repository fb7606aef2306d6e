"""Knobs read from the environment, so one locust.conf serves every target.

BENCH_SEEDED_USERS  seeded accounts to log in as, user0..userN-1 (default 10,
                    what `make run` seeds; the benchmark seed has 200)
BENCH_PASSWORD      their password (app/seed.py: peregrine-load-test)
BENCH_USER_RATE     tasks per second per simulated user (default 1)
BENCH_POOL_PAGES    pages of 100 products loaded into the id pools (default 10)
BENCH_MAX_FAIL_RATIO, BENCH_P95_MS, BENCH_ALLOW_CPU_WARNING: see checks.py
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import

import os


def _number(name, default, kind=float):
    value = os.environ.get(name, "")
    try:
        return kind(value) if value else default
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not a number") from None


SEEDED_USERS = _number("BENCH_SEEDED_USERS", 10, int)
PASSWORD = os.environ.get("BENCH_PASSWORD", "peregrine-load-test")
USER_RATE = _number("BENCH_USER_RATE", 1.0)
POOL_PAGES = _number("BENCH_POOL_PAGES", 10, int)
MAX_FAIL_RATIO = _number("BENCH_MAX_FAIL_RATIO", 0.01)
P95_MS = _number("BENCH_P95_MS", 500.0)
ALLOW_CPU_WARNING = os.environ.get("BENCH_ALLOW_CPU_WARNING") == "1"
