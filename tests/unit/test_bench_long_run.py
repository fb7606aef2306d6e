"""bench.compare's long run stops short of the shipped max_requests, whatever the rate."""

from types import SimpleNamespace

import pytest

from bench.compare import __main__ as compare
from bench.compare import measure

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("rate", [900, 30_000, 41_455, 120_000])
def test_the_long_run_ends_a_little_short_of_one_million(monkeypatch, rate):
    calls = []

    def wrk(url, seconds, connections, options, script_args):
        calls.append(seconds)
        return {"requests": rate * seconds, "non_2xx": 0, "socket_errors": 0}

    monkeypatch.setattr(measure, "wrk", wrk)
    monkeypatch.setattr(measure, "alive", lambda pid: True)
    monkeypatch.setattr(measure, "rss_mb", lambda pid: 60.0)
    session = SimpleNamespace(pid=1, url=lambda path: "http://127.0.0.1:1" + path)
    plan = {"product": ("/v1/products/x", [], [])}
    result = compare.long_run(session, plan, SimpleNamespace(connections=64))
    assert 1_000_000 - 1.25 * rate <= result["requests_1m"] <= 1_000_000
    assert result["requests_100k"] >= 100_000
    assert all(1 <= seconds <= 10 for seconds in calls)
