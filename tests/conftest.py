"""The test harness: a real Postgres and a real memcached on free ports.

Both are started once per session in a private temporary directory (never
the developer's ``.run``), with the schema migrated. Each test that touches
data gets empty tables and an empty cache. Servers under test run as real
gunicorn processes with the production ``gunicorn.conf.py``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import falcon.testing
import psycopg2
import pytest

from app.config import Config
from app.factory import create_app
from app.manage.migrate import migrate
from app.manage.services import MemcachedServer, PostgresServer
from tests.support.processes import free_port, stop_process, wait_for_port, wait_until_ready

REPO = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-secret-" + "x" * 40
# A Fernet key (32 bytes, URL-safe base64), as `services up` generates one: the
# two-factor routes answer 503 without it.
DATA_KEY = "dGVzdC1kYXRhLWtleS0zMi1ieXRlcy1sb25nLi4uLi4="

TABLES = ("audit_log", "idempotency_keys", "order_items", "orders", "products",
          "categories", "refresh_tokens", "refresh_families", "users",
          "webhook_deliveries", "webhook_subscriptions", "events")


def pytest_collection_modifyitems(config, items):
    # Here as well as in tests/unit/conftest.py: that one is loaded only when
    # tests/unit is collected, and `-m integration` must work on any selection.
    unit = Path(__file__).resolve().parent / "unit"
    for item in items:
        if unit not in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def run_dir():
    # Not pytest's tmp_path: its root is 0700 and the servers run unprivileged.
    path = Path(tempfile.mkdtemp(prefix="peregrine-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(run_dir):
    server = PostgresServer(run_dir / "postgres", durable=False)
    server.start()
    server.ensure_database()
    migrate(server.dsn(), log=lambda message: None)
    yield server
    server.stop("immediate")


@pytest.fixture(scope="session")
def replica(postgres, run_dir):
    """A streaming standby of ``postgres``, started only for the tests that ask for it."""
    from tests.support.replicas import start_replica

    server = start_replica(postgres, run_dir)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def memcached(run_dir):
    server = MemcachedServer(run_dir / "memcached")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_env(postgres, memcached) -> dict[str, str]:
    """The PEREGRINE_* variables a server under test gets."""
    return {
        "PEREGRINE_DATABASE_URL": postgres.dsn(),
        "PEREGRINE_MEMCACHED_SERVERS": f"127.0.0.1:{memcached.port}",
        "PEREGRINE_JWT_SECRET": JWT_SECRET,
        "PEREGRINE_DATA_KEY": DATA_KEY,
        "PEREGRINE_WORKERS": "1",
        "PEREGRINE_LOG_LEVEL": "warning",
    }


@pytest.fixture
def db(postgres):
    """A clean database: every table emptied before the test."""
    conn = psycopg2.connect(postgres.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    yield conn
    conn.close()


@pytest.fixture
def cache_flushed(memcached):
    from pymemcache.client.base import Client

    client = Client(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1)
    client.flush_all(noreply=False)
    client.close()


@pytest.fixture
def config(base_env) -> Config:
    return Config.from_env(base_env)


@pytest.fixture
def app(config, db, cache_flushed):
    application = create_app(config, configure_logging=False)
    yield application
    application.deps.close()


@pytest.fixture
def client(app) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(app)


class LiveServer:
    """A gunicorn process serving Peregrine on a free loopback port."""

    def __init__(self, env: dict[str, str], app_path: str = "app.wsgi:application",
                 log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PEREGRINE_BIND": f"127.0.0.1:{self.port}"}
        self.app_path = app_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> LiveServer:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(REPO / "gunicorn.conf.py"),
             self.app_path],
            cwd=REPO, env=self.env, stdout=log, stderr=log,
        )
        try:
            # The master listens before any worker has booted: wait for a
            # worker to answer, not just for the port.
            wait_for_port(self.port, timeout, self.proc)
            wait_until_ready(self._answers, self.proc, timeout, self.log)
        except Exception:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def stop(self) -> int | None:
        return stop_process(self.proc, grace=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@pytest.fixture
def live_server_factory(base_env, db, cache_flushed, tmp_path):
    """Start gunicorn servers with extra env; all are stopped after the test."""
    servers: list[LiveServer] = []

    def start(app_path: str = "app.wsgi:application", **env) -> LiveServer:
        server = LiveServer({**base_env, **env}, app_path,
                            tmp_path / f"server-{len(servers)}.log")
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(live_server_factory) -> LiveServer:
    return live_server_factory()
