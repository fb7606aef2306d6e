"""Fixtures several integration modules share (the session harness is tests/conftest.py)."""

from __future__ import annotations

from dataclasses import replace

import falcon.testing
import gevent
import pytest

from app.factory import create_app
from app.manage.services import MemcachedServer
from app.queries import products as product_queries
from tests.support.api import new_user
from tests.support.greenlets import Pause
from tests.support.metrics import CountingMetrics
from tests.support.processes import free_port


@pytest.fixture
def admin(client, db):
    return new_user(client, "admin", db)


@pytest.fixture
def memcached_nodes(run_dir):
    """Start ``count`` dedicated memcached servers (stopped after the test)."""
    started = []

    def start(count):
        for _ in range(count):
            server = MemcachedServer(run_dir / f"memcached-outage-{free_port()}")
            server.start()
            started.append(server)
        return started[-count:]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def instances(config, db):
    """``instances(servers, n)``: n apps (service nodes) on the given memcached servers."""
    apps = []

    def build(servers, count=2):
        node_config = replace(config, rate_limit_per_minute=0,
                              memcached_servers=tuple(("127.0.0.1", s.port) for s in servers))
        for _ in range(count):
            metrics = CountingMetrics()
            app = create_app(node_config, metrics=metrics, configure_logging=False)
            apps.append(app)
        return [(falcon.testing.TestClient(a), a) for a in apps[-count:]]

    yield build
    for app in apps:
        app.deps.close()


@pytest.fixture
def paused_query(monkeypatch):
    """``paused_query(name)``: the reader greenlet's ``name`` product query pauses after running."""

    def install(name):
        real, pause = getattr(product_queries, name), Pause()

        def query(*args, **kwargs):
            result = real(*args, **kwargs)
            if gevent.getcurrent() is pause.reader:
                pause()
            return result

        monkeypatch.setattr(product_queries, name, query)
        return pause

    return install
