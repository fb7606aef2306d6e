"""Cache invalidation under load: after a write, every read must show it within the bound.

The contract (Catalog): a committed write is visible to the next read on the
node that made it and to reads on every other node within 1 second, and no
interleaving of readers, writers and cache trouble may serve an older value
after that. The admin suite writes a small hot set of products while other
users read them; every write and read of the hot set goes through here.

A read is compared with the newest write this load generator made to that
product, by ``updated_at`` (the service's own commit order, so writes by other
generators only ever make a read look newer, never stale):

- newer or equal: converged;
- older, the write committed less than BENCH_CONVERGE_MS ago: allowed;
- older, after the bound: stale, the read is marked failed and the run fails.

Workers send their counts to the master with each stats report, so a
distributed run has one total.
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from locust import events

from common import settings


@dataclass
class Counts:
    writes: int = 0           # committed admin writes of hot products
    checked_reads: int = 0    # reads of a product after a write of it
    converged: int = 0        # ... that showed the write (or a newer one)
    stale_in_bound: int = 0   # ... older, but within the bound
    stale_after_bound: int = 0  # ... older after the bound: a broken promise
    max_lag_ms: float = 0.0   # longest write → first read showing it, by the writer

    def add(self, other):
        for name, value in asdict(other).items():
            if name == "max_lag_ms":
                self.max_lag_ms = max(self.max_lag_ms, value)
            else:
                setattr(self, name, getattr(self, name) + value)


totals = Counts()     # this process (the master: all workers)
_unreported = Counts()  # a worker's counts not yet sent to the master
_latest = {}          # product id -> (updated_at, price, monotonic time of the write)


def _count(**deltas):
    for counts in (totals, _unreported):
        for name, value in deltas.items():
            if name == "max_lag_ms":
                counts.max_lag_ms = max(counts.max_lag_ms, value)
            else:
                setattr(counts, name, getattr(counts, name) + value)


def _when(product):
    return datetime.fromisoformat(product["updated_at"])


def wrote(product, committed_at):
    """An admin's write came back (200): ``product`` is the response body."""
    _latest[product["id"]] = (_when(product), Decimal(product["price"]), committed_at)
    _count(writes=1)


def _is_latest(product, latest):
    written_at, price, _ = latest
    seen = _when(product)
    return seen > written_at or (seen == written_at and Decimal(product["price"]) == price)


def shows_latest(product):
    """Whether ``product`` shows the newest write this generator made to it (or a newer one)."""
    latest = _latest.get(product["id"])
    return latest is None or _is_latest(product, latest)


def check(product, read_started):
    """Judge one read of ``product``; returns a failure message, or None.

    ``read_started`` is the monotonic time the request was sent: a read sent
    before the bound ran out may still show the old value.
    """
    latest = _latest.get(product["id"])
    if latest is None:
        return None  # not written by this generator (yet): nothing to compare with
    committed_at = latest[2]
    if _is_latest(product, latest):
        _count(checked_reads=1, converged=1)
        return None
    lag_ms = (read_started - committed_at) * 1000
    if lag_ms <= settings.CONVERGE_MS:
        _count(checked_reads=1, stale_in_bound=1)
        return None
    _count(checked_reads=1, stale_after_bound=1)
    return (f"stale: updated_at {product['updated_at']} is older than a write committed "
            f"{lag_ms:.0f} ms before this read (bound {settings.CONVERGE_MS:.0f} ms)")


def converged_after(lag_s):
    """The writer saw its own write come back ``lag_s`` after the commit."""
    _count(max_lag_ms=lag_s * 1000)


def summary():
    return {**asdict(totals), "bound_ms": settings.CONVERGE_MS}


def problems():
    found = []
    if totals.stale_after_bound:
        found.append(f"{totals.stale_after_bound} reads showed a product older than a write "
                     f"committed more than {settings.CONVERGE_MS:.0f} ms before")
    if totals.writes and not totals.checked_reads:
        found.append(f"{totals.writes} admin writes, but no read checked them")
    return found


@events.report_to_master.add_listener
def _send(client_id, data, **_kwargs):
    global _unreported
    data["convergence"] = asdict(_unreported)
    _unreported = Counts()


@events.worker_report.add_listener
def _receive(client_id, data, **_kwargs):
    if "convergence" in data:
        totals.add(Counts(**data["convergence"]))


@events.test_start.add_listener
def _reset(environment, **_kwargs):
    # A new test from the web UI starts from zero, as locust's own statistics do.
    global totals, _unreported
    totals, _unreported = Counts(), Counts()
    _latest.clear()


def now():
    return time.monotonic()
