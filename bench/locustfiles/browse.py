"""The browse suite: anonymous visitors open, browse and search products (read-mostly).

Task mix (weights, tags): product detail 10 (detail), conditional re-read of a
product seen before (If-None-Match, 304) 3 (revalidate), a category page 4 and
its next page 1 (category), a text search 2 (search), the category list 1
(category). Every task is also tagged ``browse``. Every response is checked,
not just its status.

Run from bench/ (locust.conf there holds the defaults)::

    .venv/bin/locust -f locustfiles/browse.py --csv results/browse
    .venv/bin/locust -f locustfiles/browse.py --exclude-tags search   # no full-text search
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os
import random
import sys

from locust import tag, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

from common import checks, convergence
from common.data import pools
from common.users import ApiUser

# p95 budgets per request name, in ms: cache hits must stay fast; listings and
# searches may reach Postgres (the whole run also has BENCH_P95_MS).
checks.budget({
    "/v1/products/[id]": 150,
    "/v1/products/[id] (If-None-Match)": 150,
    "/v1/categories": 150,
    "/v1/products?category=[slug]": 400,
    "/v1/products?cursor=[next]": 400,
    "/v1/products?q=[term]": 400,
})

SORTS = ("-created_at", "price", "-price", "name")
SEEN_MAX = 50  # ETags remembered per user for conditional re-reads


class Browser(ApiUser):
    weight = 6  # in the mixed suite: most visitors only look

    def on_start(self):
        super().on_start()
        self.seen = {}  # product id -> ETag from an earlier read
        self.next_page = None  # (category slug, sort, cursor) of the last listing

    @tag("browse", "detail")
    @task(10)
    def product_detail(self):
        product_id = random.choice(pools.product_ids)
        started = convergence.now()
        with self.api("GET", f"/v1/products/{product_id}", name="/v1/products/[id]") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert r.js["id"] == product_id, "another product came back"
            # In a mixed run admins change some of these products.
            message = convergence.check(r.js, started)
            assert message is None, message
            etag = r.headers.get("ETag")
            assert etag, "no ETag"
            if len(self.seen) >= SEEN_MAX:
                self.seen.pop(next(iter(self.seen)))
            self.seen[product_id] = etag

    @tag("browse", "revalidate")
    @task(3)
    def product_revalidate(self):
        """A browser re-reading a product it has: 304 unless the product changed."""
        if not self.seen:
            return self.product_detail()
        product_id, etag = random.choice(list(self.seen.items()))
        # The plain client with catch_response, because a 304 has no JSON to parse.
        with self.client.get(f"/v1/products/{product_id}", catch_response=True,
                             name="/v1/products/[id] (If-None-Match)",
                             headers={**self.headers, "If-None-Match": etag}) as r:
            if r.status_code == 304:
                r.success()
            elif r.status_code == 200 and r.headers.get("ETag") != etag:
                self.seen[product_id] = r.headers.get("ETag")  # changed meanwhile (admin suite)
                r.success()
            else:
                r.failure(f"status {r.status_code} for a current ETag")

    @tag("browse", "category")
    @task(4)
    def browse_category(self):
        slug, sort = random.choice(pools.categories), random.choice(SORTS)
        with self.api("GET", f"/v1/products?category={slug}&sort={sort}&limit=20",
                      name="/v1/products?category=[slug]") as r:
            self._check_page(r, sort, lambda p: p["category"] == slug, "wrong category")
            self.next_page = (slug, sort, r.js["next_cursor"])

    @tag("browse", "category")
    @task(1)
    def next_category_page(self):
        if not self.next_page or not self.next_page[2]:
            return self.browse_category()
        slug, sort, cursor = self.next_page
        with self.api("GET", f"/v1/products?category={slug}&sort={sort}&limit=20"
                             f"&cursor={cursor}", name="/v1/products?cursor=[next]") as r:
            self._check_page(r, sort, lambda p: p["category"] == slug, "wrong category")
            self.next_page = (slug, sort, r.js["next_cursor"])

    @tag("browse", "search")
    @task(2)
    def search(self):
        term = random.choice(pools.search_terms)
        with self.api("GET", f"/v1/products?q={term}&limit=20",
                      name="/v1/products?q=[term]") as r:
            self._check_page(r, "-created_at",
                             lambda p: term in f"{p['name']} {p['description']}".lower(),
                             f"an item does not contain {term!r}")

    @tag("browse", "category")
    @task(1)
    def categories(self):
        with self.api("GET", "/v1/categories", name="/v1/categories") as r:
            assert r.status_code == 200, f"status {r.status_code}"
            assert len(r.js["items"]) == len(pools.categories), "categories changed"

    @staticmethod
    def _check_page(r, sort, matches, mismatch):
        assert r.status_code == 200, f"status {r.status_code}"
        items = r.js["items"]
        assert len(items) <= 20, "more items than the limit"
        assert all(matches(p) for p in items), mismatch
        if sort in ("price", "-price"):
            prices = [float(p["price"]) for p in items]
            assert prices == sorted(prices, reverse=sort == "-price"), f"not sorted by {sort}"
