"""The admin suite: cache invalidation under load.

Admins change the price and stock of a small hot set of products (the first
BENCH_HOT_PRODUCTS of the catalog, the same on every load generator) while
readers keep reading those products through the cache. After each write the
admin re-reads the product until it shows the write, and every read of the
hot set, by anyone, is held to the contract's promise (CONTRACT.md, Catalog):
within BENCH_CONVERGE_MS (1 s) of a committed write no read may show the older
value. A read that does is a failed request, and the verdict fails on it
(common/convergence.py has the rule and the counts; the JSON verdict has them
under "convergence").

Tags: ``admin`` on every task, ``write`` on the admin's, ``converge`` on the
readers'. The admin account comes from BENCH_ADMIN_EMAIL and
BENCH_ADMIN_PASSWORD (bench/README.md shows how to create one).

Run from bench/ (locust.conf there holds the defaults)::

    .venv/bin/locust -f locustfiles/admin.py --csv results/admin
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os
import random
import sys
from decimal import Decimal

import gevent
from locust import tag, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

from common import checks, convergence, settings
from common.data import pools
from common.users import ApiUser, SignedInUser

checks.budget({
    "/v1/products/[id] (PATCH)": 500,
    "/v1/products/[id] (after write)": 150,
    "/v1/products/[id] (hot)": 150,
    "/v1/auth/login": 2000,
    "/v1/auth/refresh": 300,
})

POLL_S = 0.02  # between the writer's re-reads of its own write


def hot_products():
    return pools.product_ids[:settings.HOT_PRODUCTS]


class Admin(SignedInUser):
    weight = 1

    def credentials(self):
        return settings.ADMIN_EMAIL, settings.ADMIN_PASSWORD

    @tag("admin", "write")
    @task
    def update_product(self):
        product_id = random.choice(hot_products())
        # Stock stays high: shoppers in a mixed run buy these products too.
        body = {"price": f"{random.randint(100, 99_999) / 100:.2f}",
                "stock": random.randint(500, 1000)}
        committed_at = None
        with self.api("PATCH", f"/v1/products/{product_id}", name="/v1/products/[id] (PATCH)",
                      json=body) as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert Decimal(r.js["price"]) == Decimal(body["price"]), \
                "the answer does not show the new price"
            # The commit happened before this answer arrived: timing the bound
            # from here errs on the service's side, never a false alarm.
            committed_at = convergence.now()
            convergence.wrote(r.js, committed_at)
        if committed_at is not None:
            self._await(product_id, committed_at)

    def _await(self, product_id, committed_at):
        """Re-read until the write shows; the read after the bound fails if it does not."""
        deadline = committed_at + settings.CONVERGE_MS / 1000
        while True:
            started = convergence.now()
            with self.api("GET", f"/v1/products/{product_id}",
                          name="/v1/products/[id] (after write)") as r:
                assert r.status_code == 200, f"status {r.status_code}"
                message = convergence.check(r.js, started)
                assert message is None, message
                if convergence.shows_latest(r.js):
                    convergence.converged_after(convergence.now() - committed_at)
                    return
            if r.js is None or started > deadline:
                return  # a failed read is in the statistics already
            gevent.sleep(POLL_S)


class HotReader(ApiUser):
    """A visitor reading the products the admins are changing."""

    weight = 2

    @tag("admin", "converge")
    @task
    def read_hot_product(self):
        product_id = random.choice(hot_products())
        started = convergence.now()
        with self.api("GET", f"/v1/products/{product_id}", name="/v1/products/[id] (hot)") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert r.js["id"] == product_id, "another product came back"
            message = convergence.check(r.js, started)
            assert message is None, message
