"""Knobs read from the environment, so one locust.conf serves every target.

BENCH_SEEDED_USERS  seeded accounts to log in as, user0..userN-1 (default 10,
                    what `make run` seeds; the benchmark seed has 200)
BENCH_PASSWORD      their password (app/manage/seed.py: peregrine-load-test)
BENCH_USER_RATE     tasks per second per simulated user (default 1)
BENCH_POOL_PAGES    pages of 100 products loaded into the id pools (default 10)
BENCH_REFRESH_S     signed-in users refresh their token pair after this many
                    seconds (default: a minute before the access token expires)
BENCH_ADMIN_EMAIL, BENCH_ADMIN_PASSWORD
                    an admin account for the admin suite (default
                    admin@example.test / BENCH_PASSWORD)
BENCH_HOT_PRODUCTS  products the admin suite writes and reads (default 20)
BENCH_MFA_SHARE     share of shoppers that register their own account, enrol
                    TOTP and sign in with two factors (default 0.1)
BENCH_CONVERGE_MS   how long after a write every read must show it (default
                    1000, the contract's bound for reads on other nodes)
BENCH_MAX_FAIL_RATIO, BENCH_P95_MS, BENCH_ALLOW_CPU_WARNING: see checks.py
BENCH_BUDGET_FACTOR multiplies every p95 budget and BENCH_P95_MS (default 1;
                    smoke runs on a busy machine check behaviour, not speed)
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os


def number(name, default, kind=float):
    value = os.environ.get(name, "")
    try:
        return kind(value) if value else default
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not a number") from None


SEEDED_USERS = number("BENCH_SEEDED_USERS", 10, int)
PASSWORD = os.environ.get("BENCH_PASSWORD", "peregrine-load-test")
USER_RATE = number("BENCH_USER_RATE", 1.0)
POOL_PAGES = number("BENCH_POOL_PAGES", 10, int)
REFRESH_S = number("BENCH_REFRESH_S", None)
ADMIN_EMAIL = os.environ.get("BENCH_ADMIN_EMAIL", "admin@example.test")
ADMIN_PASSWORD = os.environ.get("BENCH_ADMIN_PASSWORD", PASSWORD)
HOT_PRODUCTS = number("BENCH_HOT_PRODUCTS", 20, int)
CONVERGE_MS = number("BENCH_CONVERGE_MS", 1000.0)
MAX_FAIL_RATIO = number("BENCH_MAX_FAIL_RATIO", 0.01)
P95_MS = number("BENCH_P95_MS", 500.0)
BUDGET_FACTOR = number("BENCH_BUDGET_FACTOR", 1.0)
ALLOW_CPU_WARNING = os.environ.get("BENCH_ALLOW_CPU_WARNING") == "1"
