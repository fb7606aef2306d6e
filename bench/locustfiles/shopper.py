"""The shopper suite: signed-in buyers place orders, list their own, now and then cancel one.

Each user signs in once (on_start) as one of the seeded accounts and from then
on refreshes its token pair (POST /v1/auth/refresh, rotation) instead of
signing in again (common/users.py). Task mix (weights, tags): place an order 5
(orders), with an Idempotency-Key and, one time in ten, the same request sent
again, which must return the same order; list its own orders 3 (orders); read
a product before buying 2 (detail); cancel one of its placed orders 1 (orders;
it gives the stock back, so a long run does not drain the catalog). Every task
is also tagged ``shopper``.

Run from bench/ (locust.conf there holds the defaults)::

    .venv/bin/locust -f locustfiles/shopper.py --csv results/shopper
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os
import random
import sys
import uuid

from locust import tag, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

from common import checks
from common.data import pools
from common.users import SignedInUser

# p95 budgets per request name, in ms. Orders lock stock rows in a transaction;
# login runs a memory-hard KDF on purpose, so its budget is its own.
checks.budget({
    "/v1/orders": 500,
    "/v1/orders (replay)": 300,
    "/v1/orders (out of stock)": 500,
    "/v1/orders?limit=20": 300,
    "/v1/orders/[id]/cancel": 500,
    "/v1/products/[id]": 150,
    "/v1/auth/login": 2000,
    "/v1/auth/refresh": 300,
})

ADDRESS = {"line1": "1 Load Test Way", "city": "Berlin", "postal_code": "10115",
           "country": "DE"}
PLACED_MAX = 20  # placed order ids remembered per user, for cancelling


class Shopper(SignedInUser):
    weight = 3  # in the mixed suite: a third of the visitors buy

    def on_start(self):
        super().on_start()
        self.placed = []  # ids of this user's orders still "placed"
        with self.api("GET", "/v1/users/me", name="/v1/users/me") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            self.user_id = r.js["id"]

    @tag("shopper", "orders")
    @task(5)
    def place_order(self):
        lines = random.sample(pools.in_stock_ids, k=random.randint(1, 3))
        body = {"items": [{"product_id": p, "quantity": random.randint(1, 2)} for p in lines],
                "shipping_address": ADDRESS}
        key = {"Idempotency-Key": str(uuid.uuid4())}
        order_id = None
        with self.api("POST", "/v1/orders", name="/v1/orders", json=body, headers=key) as r:
            if r.status_code == 409 and r.js["error"]["code"] == "out_of_stock":
                # A business outcome, not a failure: other buyers took the stock.
                # Counted on a row of its own, so the report shows how often.
                r.request_meta["name"] = "/v1/orders (out of stock)"
                r.success()
                return
            assert r.status_code == 201, f"status {r.status_code}"
            assert r.js["status"] == "placed", "not placed"
            assert sorted(i["product_id"] for i in r.js["items"]) == sorted(lines), "wrong items"
            order_id = r.js["id"]
            self._remember(order_id)
        if order_id and random.random() < 0.1:
            # A client retrying after a lost response: the first answer comes back.
            with self.api("POST", "/v1/orders", name="/v1/orders (replay)", json=body,
                          headers=key) as r:
                assert r.status_code == 201, f"status {r.status_code}"
                assert r.js["id"] == order_id, "a replay created another order"

    @tag("shopper", "orders")
    @task(3)
    def list_my_orders(self):
        with self.api("GET", "/v1/orders?limit=20", name="/v1/orders?limit=20") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert all(o["user_id"] == self.user_id for o in r.js["items"]), \
                "another user's order was listed"

    @tag("shopper", "detail")
    @task(2)
    def view_product(self):
        product_id = random.choice(pools.in_stock_ids)
        with self.api("GET", f"/v1/products/{product_id}", name="/v1/products/[id]") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert r.js["id"] == product_id, "another product came back"

    @tag("shopper", "orders")
    @task(1)
    def cancel_order(self):
        if not self.placed:
            return self.place_order()
        order_id = self.placed.pop(random.randrange(len(self.placed)))
        with self.api("POST", f"/v1/orders/{order_id}/cancel",
                      name="/v1/orders/[id]/cancel") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert r.js["status"] == "cancelled", "not cancelled"

    def _remember(self, order_id):
        if len(self.placed) >= PLACED_MAX:
            self.placed.pop(0)
        self.placed.append(order_id)
