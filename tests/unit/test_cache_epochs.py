"""Pure logic of the cache: key placement and per-node epochs (no servers)."""

import contextlib

import gevent
import gevent.event
import pytest

from app import cache_epochs
from app.cache import Cache, key
from app.cache_epochs import Epochs
from tests.support.processes import free_port

NODE = "10.0.0.1:11211"


class FakeTable:
    """Stands in for app.queries.cache_epochs over a dict, with a sequence."""

    def __init__(self):
        self.rows: dict[str, int] = {}
        self.sequence = 1000
        self.bumps = 0
        self.fail = False
        self.gate = None  # an Event a bump waits on, to hold it in flight

    def _next(self):
        self.sequence += 1
        return self.sequence

    def current(self, cur, nodes):
        if self.fail:
            raise OSError("postgres is down")
        return {n: e for n, e in self.rows.items() if n in nodes}

    def create_missing(self, cur, nodes):
        for node in nodes:
            self.rows.setdefault(node, self._next())

    def bump(self, cur, node):
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise OSError("postgres is down")
        self.bumps += 1
        self.rows[node] = max(self._next(), self.rows.get(node, 0) + 1)
        return self.rows[node]


class FakePool:
    @contextlib.contextmanager
    def connection(self, *, ahead=False):
        yield self

    def cursor(self):
        return contextlib.nullcontext()


@pytest.fixture
def table(monkeypatch):
    table = FakeTable()
    monkeypatch.setattr(cache_epochs, "q", table)
    return table


@pytest.fixture
def epochs(table):
    epochs = Epochs(FakePool(), interval=0.01)
    epochs.watch([NODE])
    yield epochs
    epochs.close()


def test_keys_stay_on_their_configured_node_whatever_its_health():
    servers = [("127.0.0.1", free_port()) for _ in range(3)]
    keys = [key("product", i) for i in range(300)]
    first = Cache(servers)
    owners = {k: first.owner(k) for k in keys}
    assert {owners[k] for k in keys} == {f"127.0.0.1:{p}" for _, p in servers}
    # Another process with the same configuration agrees, and a node's
    # failures (its breaker open) never move its keys elsewhere.
    second = Cache(servers, connect_timeout=0.01, timeout=0.01, breaker_threshold=1)
    for k in keys[:10]:
        assert second.get(k) is None  # every node is down: each breaker opens
    assert not second.available
    assert {k: second.owner(k) for k in keys} == owners
    first.close()
    second.close()


def test_one_server_needs_no_hashing():
    cache = Cache([("127.0.0.1", free_port())])
    assert cache._ring is None
    assert cache.owner(key("anything", 1)) == cache.owner(key("else", 2))
    cache.close()


def test_a_node_without_a_row_gets_a_fresh_epoch_and_epochs_never_go_back(epochs, table):
    assert epochs.get(NODE) == 1001  # created from the sequence, never 0
    table.rows[NODE] = 5  # a row lost and recreated by hand, or a restored backup
    assert epochs.refresh()
    assert epochs.get(NODE) == 1001
    table.rows[NODE] = 2000
    assert epochs.refresh()
    assert epochs.get(NODE) == 2000


def test_nothing_is_used_before_the_epochs_were_read_once(table):
    table.fail = True
    epochs = Epochs(FakePool(), interval=0.01)
    epochs.watch([NODE])
    assert epochs.get(NODE) is None  # Postgres down at start: bypass the cache
    table.fail = False
    assert epochs.refresh()
    assert epochs.get(NODE) == 1001
    table.fail = True
    assert not epochs.refresh()
    assert epochs.get(NODE) == 1001  # keeps the last known epoch while Postgres is down
    epochs.close()


def test_a_lost_invalidation_moves_the_node_to_a_new_epoch_before_returning(epochs, table):
    before = epochs.get(NODE)
    epochs.lost([NODE])
    assert table.bumps == 1
    assert epochs.get(NODE) == table.rows[NODE] > before


def test_a_write_that_lost_an_invalidation_answers_after_sibling_workers_adopted(table):
    writer, sibling = (Epochs(FakePool(), interval=0.05) for _ in range(2))
    for epochs in (writer, sibling):
        epochs.watch([NODE])
        epochs.get(NODE)  # both started, on the same epoch
    assert sibling.get(NODE) == writer.get(NODE)
    writer.lost([NODE])
    assert sibling.get(NODE) == writer.get(NODE) == table.rows[NODE]
    writer.close()
    sibling.close()


def test_a_failed_bump_bypasses_the_node_until_a_retry_succeeds(table):
    epochs = Epochs(FakePool(), interval=0.01)
    epochs.watch([NODE])
    before = epochs.get(NODE)
    table.fail = True
    epochs.lost([NODE])
    assert epochs.get(NODE) is None
    gevent.sleep(0.05)
    assert epochs.get(NODE) is None  # the poller reads the old epoch: still not usable
    table.fail = False
    with gevent.Timeout(5):
        while epochs.get(NODE) is None:
            gevent.sleep(0.01)
    assert epochs.get(NODE) > before
    assert table.bumps == 1
    epochs.close()


def test_losses_during_a_bump_are_covered_by_one_later_bump(epochs, table):
    epochs.get(NODE)
    table.gate = gevent.event.Event()
    first = gevent.spawn(epochs.lost, [NODE])
    gevent.sleep(0)  # its bump is now in flight, begun before the next losses
    later = [gevent.spawn(epochs.lost, [NODE]) for _ in range(5)]
    gevent.sleep(0)
    assert epochs.get(NODE) is None  # bypassed while the losses are not covered
    table.gate.set()
    gevent.joinall([first, *later], raise_error=True, timeout=10)
    assert all(g.dead for g in [first, *later])
    assert table.bumps == 2  # the in-flight one could not cover them; one more did
    assert epochs.get(NODE) == table.rows[NODE]


def test_the_poll_interval_is_configurable_and_kept_under_the_contract():
    from app.config import Config, ConfigError

    env = {"PEREGRINE_DATABASE_URL": "postgresql://p@127.0.0.1/p",
           "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211", "PEREGRINE_JWT_SECRET": "s" * 32}
    assert Config.from_env(env).cache_epoch_poll == 0.25
    assert Config.from_env({**env, "PEREGRINE_CACHE_EPOCH_POLL": "0.1"}).cache_epoch_poll == 0.1
    with pytest.raises(ConfigError, match="PEREGRINE_CACHE_EPOCH_POLL"):
        Config.from_env({**env, "PEREGRINE_CACHE_EPOCH_POLL": "2"})
