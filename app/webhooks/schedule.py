"""When a failed attempt is tried again.

Exponential backoff with full jitter (a uniformly random delay up to
``base * 2**(attempt - 1)``, capped), so endpoints coming back after an
outage are not hit by every queued delivery at the same moment. A
``Retry-After`` from the endpoint overrides it: the next attempt is never
earlier than the endpoint asked.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime


def backoff(attempts: int, base: float, cap: float, rng=random.random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 60))
    return rng() * ceiling


def retry_after(header: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(int(header))
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def next_delay(attempts: int, retry_after_seconds: float | None, *, base: float, cap: float,
               longest: float) -> float:
    """The delay before the next attempt: ``Retry-After`` when given (up to ``longest``)."""
    if retry_after_seconds is not None:
        return min(retry_after_seconds, longest)
    return backoff(attempts, base, cap)
