"""The shopper suite: signed-in buyers place orders, list their own, now and then cancel one.

Each user signs in once (on_start) as one of the seeded accounts and from then
on refreshes its token pair (POST /v1/auth/refresh, rotation) instead of
signing in again (common/users.py). Task mix (weights, tags): place an order 5
(orders), with an Idempotency-Key and, one time in ten, the same request sent
again, which must return the same order; list its own orders 3 (orders); read
a product before buying 2 (detail); cancel one of its placed orders 1 (orders;
it gives the stock back, so a long run does not drain the catalog). Every task
is also tagged ``shopper``.

A share of the shoppers (BENCH_MFA_SHARE, default 0.1: every tenth one started)
signs in with two factors, as the contract's account lifecycle has it: at
on_start it registers an account of its own (a seeded account shared with
other users, or enrolled by an earlier run whose secret is gone, could not
sign in), enrols TOTP (POST /v1/users/me/mfa/totp), confirms it with a code,
and logs in again through the two steps: the password login answers 401
``mfa_required`` with an ``mfa_token`` ("/v1/auth/login (mfa required)"), then
POST /v1/auth/login/mfa with a code opens the session. Codes come from pyotp;
the server takes each 30-second step once, so every code is for a later step
than the last one used.

Run from bench/ (locust.conf there holds the defaults)::

    .venv/bin/locust -f locustfiles/shopper.py --csv results/shopper
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os
import random
import sys
import time
import uuid

import pyotp
from locust import tag, task
from locust.exception import StopUser

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

from common import checks, settings
from common.data import pools
from common.users import SignedInUser

MFA_SHARE = settings.number("BENCH_MFA_SHARE", 0.1)
if not 0 <= MFA_SHARE <= 1:
    raise SystemExit(f"BENCH_MFA_SHARE={MFA_SHARE} is not a share between 0 and 1")

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
    # The two-factor share: register, enrol and the password step all run the KDF.
    "/v1/auth/register": 2000,
    "/v1/users/me/mfa/totp": 2000,
    "/v1/users/me/mfa/totp/confirm": 500,
    "/v1/auth/login (mfa required)": 2000,
    "/v1/auth/login/mfa": 300,
})

ADDRESS = {"line1": "1 Load Test Way", "city": "Berlin", "postal_code": "10115",
           "country": "DE"}
PLACED_MAX = 20  # placed order ids remembered per user, for cancelling


class Shopper(SignedInUser):
    weight = 3  # in the mixed suite: a third of the visitors buy
    _started = 0

    def on_start(self):
        # Every 1/MFA_SHARE-th shopper, spread evenly over the ones started.
        n, Shopper._started = Shopper._started, Shopper._started + 1
        self.totp = None  # pyotp.TOTP once this shopper's second factor is on
        self.totp_step = None  # the last step whose code the server took
        self.two_factor = int((n + 1) * MFA_SHARE) > int(n * MFA_SHARE)
        super().on_start()
        if self.two_factor:
            self.enrol_totp()
            self.login()  # now through the two steps
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

    # -- the two-factor share ---------------------------------------------------

    def credentials(self):
        if not self.two_factor:
            return super().credentials()
        email = f"shopper-2fa-{uuid.uuid4().hex[:16]}@example.test"
        body = {"email": email, "password": settings.PASSWORD, "name": "Two-Factor Shopper"}
        with self.rest("POST", "/v1/auth/register", name="/v1/auth/register", json=body,
                       headers={"X-Real-IP": self.headers["X-Real-IP"]}) as r:
            assert r.status_code == 201, f"register answered {r.status_code}"
        return email, settings.PASSWORD

    def enrol_totp(self):
        totp = None
        with self.api("POST", "/v1/users/me/mfa/totp", name="/v1/users/me/mfa/totp",
                      json={"current_password": self.password}) as r:
            assert r.status_code == 201, f"status {r.status_code}"
            totp = pyotp.TOTP(r.js["secret"])
        if totp is not None:
            with self.api("POST", "/v1/users/me/mfa/totp/confirm",
                          name="/v1/users/me/mfa/totp/confirm",
                          json={"code": self.next_code(totp)}) as r:
                assert r.status_code == 200, f"status {r.status_code}"
                assert len(r.js["recovery_codes"]) == 10, "not ten recovery codes"
                self.totp = totp
        if self.totp is None:
            # The failure is in the statistics; going on with the password-only
            # session would count this shopper as a two-factor one.
            raise StopUser()

    def next_code(self, totp):
        """A code for the earliest step in the server's window (±1) not used yet.

        The server takes each step once, so a login right after the
        confirmation uses the next step's code, and one more waits for the clock.
        """
        # Never an earlier step than the current one: the clock may pass into
        # the next step before the server checks, and current - 1 would be out.
        current = int(time.time() // totp.interval)
        step = current if self.totp_step is None else max(self.totp_step + 1, current)
        if step > current + 1:
            time.sleep((step - 1) * totp.interval - time.time() + 0.05)
        self.totp_step = step
        return totp.generate_otp(step)

    def login(self):
        if self.totp is None:
            return super().login()
        self.token_renew_at = time.monotonic() + 30  # if this attempt fails, retry later
        address = {"X-Real-IP": self.headers["X-Real-IP"]}
        mfa_token = None
        with self.rest("POST", "/v1/auth/login", name="/v1/auth/login (mfa required)",
                       json={"email": self.email, "password": self.password},
                       headers=address) as r:
            error = (r.js or {}).get("error", {}) if r.status_code == 401 else {}
            assert error.get("code") == "mfa_required", f"login answered {r.status_code}"
            mfa_token = error["details"][0]["mfa_token"]
            r.success()  # the first of two steps, as the contract has it
        if mfa_token is None:
            return
        with self.rest("POST", "/v1/auth/login/mfa", name="/v1/auth/login/mfa", headers=address,
                       json={"mfa_token": mfa_token, "code": self.next_code(self.totp)}) as r:
            assert r.status_code == 200, f"mfa login answered {r.status_code}"
            self._take(r.js)

    def _remember(self, order_id):
        if len(self.placed) >= PLACED_MAX:
            self.placed.pop(0)
        self.placed.append(order_id)
