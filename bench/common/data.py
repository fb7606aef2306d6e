"""Test data: the pools users draw ids from, and the client addresses they present.

The pools are loaded once per load-generator process, at test start.

The pools come from the public API (not a file, not the database), so the same
suite runs unchanged against `make run` and against a deployed cluster, and
only ever asks for ids that exist there. The loading requests are made with
``requests``, outside locust's statistics.
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import logging
import random
from dataclasses import dataclass, field

import requests
from locust import events
from locust.exception import StopTest
from locust.runners import MasterRunner

from common import settings

log = logging.getLogger(__name__)


def client_address():
    """A random private address, sent as X-Real-IP.

    Peregrine rate-limits per client address and trusts X-Real-IP only from
    loopback (a local nginx). Against a local stack each simulated user then
    has its own budget, as real clients do. Behind a deployed nginx the header
    is replaced by the generator's address: see bench/README.md.
    """
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@dataclass
class Pools:
    product_ids: list = field(default_factory=list)
    in_stock_ids: list = field(default_factory=list)  # candidates for orders
    categories: list = field(default_factory=list)    # slugs
    search_terms: list = field(default_factory=list)  # words from product names


pools = Pools()


def _pages(session, url, pages):
    """Yield the items of up to ``pages`` pages of a paginated listing."""
    params = {"limit": 100}
    for _ in range(pages):
        response = session.get(url, params=params, timeout=10)
        response.raise_for_status()
        page = response.json()
        yield from page["items"]
        if not page["next_cursor"]:
            return
        params["cursor"] = page["next_cursor"]


def load(host, pages=settings.POOL_PAGES):
    with requests.Session() as session:
        session.headers["X-Real-IP"] = client_address()  # a rate-limit budget of its own
        products = list(_pages(session, f"{host}/v1/products", pages))
        response = session.get(f"{host}/v1/categories", timeout=10)
        response.raise_for_status()
        categories = response.json()["items"]
    pools.product_ids = [p["id"] for p in products]
    # Stock as of loading: orders for products sold out since answer 409, which
    # the shopper suite counts apart.
    pools.in_stock_ids = [p["id"] for p in products if p["stock"] > 0]
    pools.categories = [c["slug"] for c in categories]
    # Lower-case, as the search column is; short words would match nearly everything.
    pools.search_terms = sorted({w.lower() for p in products for w in p["name"].split()
                                 if len(w) >= 4})
    if not (pools.product_ids and pools.in_stock_ids and pools.categories):
        raise RuntimeError(f"{host} has no (in-stock) products or no categories: seed it")


@events.test_start.add_listener
def _load_pools(environment, **_kwargs):
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users; each worker loads its own pools
    try:
        load(environment.host.rstrip("/"))
    except Exception as exc:  # noqa: BLE001 - any failure here makes the run meaningless
        log.error("could not load the test data from %s: %s", environment.host, exc)
        environment.process_exit_code = 2
        raise StopTest("no test data") from None
    log.info("pools: %d products, %d in stock, %d categories, %d search terms",
             len(pools.product_ids), len(pools.in_stock_ids), len(pools.categories),
             len(pools.search_terms))
