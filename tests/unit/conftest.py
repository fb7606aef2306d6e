"""The unit stage: no Postgres, no memcached, no network.

Everything in this directory is marked ``unit``; every other test of the
session is marked ``integration``. A unit test cannot reach a service by
accident:

* asking for a fixture of ``tests/conftest.py`` (they all start or need the
  real servers) fails the test before it runs;
* a TCP connect that would reach a listening server, a connect or datagram
  to a non-loopback address, or a Postgres connection attempt fails the test.
  A loopback connect to a port where nothing listens is refused as usual
  (tests of the cache's failure handling rely on that).

Loopback UDP is allowed: a test may read metric datagrams from its own socket.
"""

from __future__ import annotations

import errno
import inspect
import ipaddress
import socket
from pathlib import Path

import psycopg2
import pytest

from tests.unit.fakes import FakeCache, RecordingMetrics

UNIT_DIR = Path(__file__).resolve().parent
SERVICES_CONFTEST = UNIT_DIR.parent / "conftest.py"


def _in_unit_stage(item) -> bool:
    return UNIT_DIR in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _in_unit_stage(item):
            item.add_marker(pytest.mark.unit)
        elif item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item):
    if not isinstance(item, pytest.Function):
        return
    # pytest has no public view of which definition serves each fixture name;
    # _fixtureinfo has held it since pytest 3 (an AttributeError here is loud).
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        if defs and _defined_in(defs[-1].func, SERVICES_CONFTEST):
            pytest.fail(
                f"unit test {item.nodeid} asks for the fixture {name!r} of tests/conftest.py, "
                "which needs the real Postgres/memcached: use the fakes in tests/unit/fakes.py "
                "or move the test out of tests/unit",
                pytrace=False,
            )


def _defined_in(func, path: Path) -> bool:
    try:
        return Path(inspect.getfile(func)).resolve() == path
    except TypeError:
        return False


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except (TypeError, ValueError):
        return False


@pytest.fixture(autouse=True)
def no_services(monkeypatch):
    """Fail the test if it reached, or tried to reach, anything outside this process."""
    reached: list[str] = []
    real_connect = socket.socket.connect
    real_sendto = socket.socket.sendto

    def refuse(what: str):
        reached.append(what)
        return ConnectionRefusedError(errno.ECONNREFUSED, f"not in a unit test: {what}")

    def guarded_connect(sock, address):
        if sock.family == socket.AF_UNIX:
            raise refuse(f"the unix socket {address!r}")
        if not _is_loopback(address):
            raise refuse(f"the address {address!r}")
        real_connect(sock, address)
        if sock.type == socket.SOCK_STREAM:
            # Something listens there: a developer's server, never part of a unit test.
            sock.close()
            raise refuse(f"a listening server at {address!r}")

    def guarded_connect_ex(sock, address):
        try:
            guarded_connect(sock, address)
        except OSError as ex:
            return ex.errno or errno.ECONNREFUSED
        return 0

    def guarded_sendto(sock, data, *args):
        address = args[-1]
        if not _is_loopback(address):
            raise refuse(f"a datagram to {address!r}")
        return real_sendto(sock, data, *args)

    def no_postgres(*args, **kwargs):
        reached.append("Postgres (psycopg2.connect)")
        raise psycopg2.OperationalError("unit tests use no database")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", guarded_sendto)
    monkeypatch.setattr(psycopg2, "connect", no_postgres)
    yield
    if reached:
        pytest.fail("a unit test reached outside its process: " + "; ".join(reached),
                    pytrace=False)


# Shared fakes: a test module provides ``clock`` (its own start time).
@pytest.fixture
def cache(clock):
    return FakeCache(clock)


@pytest.fixture
def metrics():
    return RecordingMetrics()
