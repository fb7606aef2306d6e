"""app/memcached_wire.py answers what pymemcache's own methods answer, on a real memcached,
and never hands a half-read connection back to the pool."""

import os
import socket
import subprocess
import sys
import threading
import time

import gevent
import gevent.socket
import pytest
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownError,
)

from app import memcached_wire as wire
from app.cache import Cache
from tests.support.memcached import stopped


@pytest.fixture
def pooled(memcached, cache_flushed):
    client = PooledClient(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1,
                          max_pool_size=4, default_noreply=False)
    yield client
    client.close()


VALUES = [
    b"",
    b"1764633600:+" + b"x" * 340,
    b"has\r\nEND\r\ninside\r\n",  # the reply's terminator inside the value
    bytes(range(256)) * 1000,  # 256 KB: several reads
]


@pytest.mark.parametrize("value", VALUES, ids=["empty", "product", "terminator", "large"])
def test_get_and_gets_answer_what_pymemcache_answers(pooled, value):
    pooled.set("w:k", value, expire=60)
    assert wire.get(pooled, "w:k") == pooled.get("w:k") == value
    found, token = wire.gets(pooled, "w:k")
    assert (found, token) == pooled.gets("w:k")
    assert found == value and token.isdigit()
    assert len(pooled.client_pool.free) == 1, "every command reused the one connection"


def test_a_miss_is_none_like_pymemcache(pooled):
    assert wire.get(pooled, "w:none") is None is pooled.get("w:none")
    assert wire.gets(pooled, "w:none") == (None, None) == pooled.gets("w:none")


def test_the_cas_token_is_the_one_memcached_checks(pooled):
    pooled.set("w:cas", b"1", expire=60)
    _, token = wire.gets(pooled, "w:cas")
    assert pooled.cas("w:cas", b"2", token, expire=60) is True
    assert pooled.cas("w:cas", b"3", token, expire=60) is False, "a used token still matched"
    assert wire.get(pooled, "w:cas") == b"2"


def test_incr_answers_what_pymemcache_answers(pooled):
    pooled.set("w:n", b"41", expire=60)
    assert wire.incr(pooled, "w:n") == 42
    assert wire.incr(pooled, "w:n", 8) == 50 == pooled.incr("w:n", 0)
    assert wire.incr(pooled, "w:missing") is None is pooled.incr("w:missing", 1)
    pooled.set("w:text", b"abc", expire=60)
    with pytest.raises(MemcacheClientError):
        wire.incr(pooled, "w:text")
    with pytest.raises(MemcacheClientError):
        pooled.incr("w:text", 1)


@pytest.mark.parametrize("value", VALUES, ids=["empty", "product", "terminator", "large"])
def test_add_stores_only_what_is_absent_like_pymemcache(pooled, value):
    assert wire.add(pooled, "w:add", value, 60) is True
    assert wire.add(pooled, "w:add", b"other", 60) is False
    assert pooled.add("w:add", b"other", expire=60) is False
    assert pooled.get("w:add") == value
    assert len(pooled.client_pool.free) == 1


def test_cas_answers_stored_exists_or_missing_like_pymemcache(pooled):
    pooled.set("w:c", b"1", expire=60)
    _, token = pooled.gets("w:c")
    assert wire.cas(pooled, "w:c", b"2", token, 60) is True
    assert wire.cas(pooled, "w:c", b"3", token, 60) is False
    assert pooled.cas("w:c", b"3", token, expire=60) is False
    assert pooled.get("w:c") == b"2"
    assert wire.cas(pooled, "w:gone", b"1", token, 60) is None is pooled.cas(
        "w:gone", b"1", token, expire=60)
    with pytest.raises(MemcacheIllegalInputError):
        wire.cas(pooled, "w:c", b"4", b"1 noreply", 60)


def test_a_stored_value_expires_when_told(pooled):
    assert wire.add(pooled, "w:ttl", b"v", 2) is True
    _, token = wire.gets(pooled, "w:ttl")
    assert wire.cas(pooled, "w:ttl", b"v2", token, 2) is True
    time.sleep(0.3)
    assert wire.get(pooled, "w:ttl") == b"v2", "expired early"
    time.sleep(3.2)  # memcached's clock ticks once a second
    assert wire.get(pooled, "w:ttl") is None, "a 2 s value outlived 3.5 s"


def test_a_fractional_ttl_is_refused_like_pymemcache(pooled):
    with pytest.raises(MemcacheError):
        pooled.add("w:frac-pm", b"v", expire=0.5)
    with pytest.raises(MemcacheIllegalInputError):  # int(0.5) would be 0: "never expires"
        wire.add(pooled, "w:frac", b"v", 0.5)


def test_stored_values_carry_flags_0_like_pymemcache(memcached, cache_flushed):
    flags_seen = PooledClient(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1,
                              default_noreply=False,
                              deserializer=lambda key, value, flags: (value, flags))
    try:
        assert wire.add(flags_seen, "w:flags", b"v", 60) is True
        _, token = wire.gets(flags_seen, "w:flags")
        assert wire.cas(flags_seen, "w:flags", b"v2", token, 60) is True
        flags_seen.add("w:flags-pm", b"v", expire=60)
        assert flags_seen.get("w:flags") == (b"v2", 0)
        assert flags_seen.get("w:flags-pm")[1] == 0
    finally:
        flags_seen.close()


def test_delete_answers_like_pymemcache(pooled):
    pooled.set("w:d", b"1", expire=60)
    assert wire.delete(pooled, "w:d") is True
    assert wire.delete(pooled, "w:d") is False is pooled.delete("w:d", noreply=False)
    assert pooled.get("w:d") is None


def test_only_bytes_are_stored(pooled):
    with pytest.raises(MemcacheIllegalInputError):
        wire.add(pooled, "w:s", "text", 60)
    assert pooled.get("w:s") is None


@pytest.mark.parametrize("bad", ["has space", "x" * 251, "caf\u00e9", "tab\there"])
def test_keys_pymemcache_refuses_are_refused(pooled, bad):
    with pytest.raises(MemcacheIllegalInputError):
        wire.gets(pooled, bad)
    with pytest.raises(MemcacheIllegalInputError):
        pooled.gets(bad)


def test_an_empty_key_is_refused_before_it_is_sent(pooled):
    with pytest.raises(MemcacheIllegalInputError):  # pymemcache sends it; memcached says ERROR
        wire.gets(pooled, "")
    assert pooled.client_pool.free == () == pooled.client_pool.used, "a connection was borrowed"


class _Peer:
    """A TCP peer that answers every command with ``reply`` bytes, then hangs up or not.

    Connections it keeps open stay open until :meth:`close` (a reader then waits
    mid-reply for bytes that never come).
    """

    def __init__(self, reply: bytes, hang_up: bool):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply, self.hang_up = reply, hang_up
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.sendall(self.reply)
            if self.hang_up:
                conn.close()
            else:
                self.conns.append(conn)

    def close(self):
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("reply, hang_up, error", [
    (b"VALUE w:k 0 10 7\r\nabc", True, MemcacheUnexpectedCloseError),
    (b"VALUE w:k 0 3 7\r\nabcd\r\nEND\r\n", False, MemcacheUnknownError),
    (b"VALUE w:k 0 3 7\r\nabc\r\nEND\r\nVALUE", False, MemcacheUnknownError),
    (b"SERVER_ERROR out of memory\r\n", False, MemcacheServerError),
    (b"", True, MemcacheUnexpectedCloseError),
    # A connection out of step with its replies fails; it never answers another key's value.
    (b"VALUE w:other 0 3 7\r\nold\r\nEND\r\n", False, MemcacheUnknownError),
    (b"VALUE w:k 0 3\r\nabc\r\nEND\r\n", False, MemcacheUnknownError),  # gets, no token
], ids=["cut-short", "wrong-length", "trailing-bytes", "server-error", "hung-up",
        "another-key", "no-cas-token"])
def test_a_broken_reply_raises_and_drops_the_connection(reply, hang_up, error):
    peer = _Peer(reply, hang_up)
    client = PooledClient(("127.0.0.1", peer.port), connect_timeout=1, timeout=1)
    try:
        with pytest.raises(error):
            wire.gets(client, "w:k")
        assert client.client_pool.free == () and client.client_pool.used == ()
    finally:
        client.close()
        peer.close()


@pytest.mark.parametrize("reply", [b"STORED\r\nSTORED\r\n", b"SERVER_ERROR out of memory\r\n",
                                   b"MAYBE\r\n"], ids=["two-lines", "server-error", "unknown"])
@pytest.mark.parametrize("command", ["add", "cas", "delete", "incr"])
def test_a_broken_one_line_reply_raises_and_drops_the_connection(reply, command):
    peer = _Peer(reply, hang_up=False)
    client = PooledClient(("127.0.0.1", peer.port), connect_timeout=1, timeout=1)
    calls = {"add": lambda: wire.add(client, "w:k", b"v", 60),
             "cas": lambda: wire.cas(client, "w:k", b"v", b"1", 60),
             "delete": lambda: wire.delete(client, "w:k"),
             "incr": lambda: wire.incr(client, "w:k")}
    try:
        with pytest.raises(MemcacheError):
            calls[command]()
        assert client.client_pool.free == () and client.client_pool.used == ()
    finally:
        client.close()
        peer.close()


def test_a_frozen_memcached_fails_open_within_the_timeout(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)], timeout=0.2, breaker_threshold=2)
    cache.set("w:frozen", b"v", 60)
    assert cache.gets("w:frozen")[0] == b"v"
    with stopped(memcached):
        assert cache.gets("w:frozen") == (None, None)
        assert cache.get("w:frozen") is None
        assert not cache.available, "two timeouts did not open the breaker"
    assert cache.ping() is True
    assert cache.gets("w:frozen")[0] == b"v", "a timed-out connection was reused"
    cache.close()


@pytest.fixture
def stalled():
    peer = _Peer(b"VALUE k 0 10 7\r\nabc", hang_up=False)  # the start of a value, then nothing
    # gevent's socket module, as in a worker: gevent.Timeout and kill() interrupt the wait.
    client = PooledClient(("127.0.0.1", peer.port), connect_timeout=1, timeout=10,
                          socket_module=gevent.socket)
    yield client
    client.close()
    peer.close()


def test_a_gevent_timeout_mid_reply_closes_and_drops_the_connection(stalled):
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
        wire.gets(stalled, "k")
    assert stalled.client_pool.used + stalled.client_pool.free == (), "a half-read one is pooled"


def test_a_greenlet_killed_mid_reply_closes_and_drops_the_connection(stalled):
    reader = gevent.spawn(wire.gets, stalled, "k")
    gevent.sleep(0.2)
    assert len(stalled.client_pool.used) == 1, "the reader never got to its recv"
    borrowed = stalled.client_pool.used[0]
    reader.kill()
    assert stalled.client_pool.used + stalled.client_pool.free == ()
    assert borrowed.sock is None, "the killed reader's socket stayed open"


def test_a_frozen_memcached_costs_about_one_timeout_per_call(memcached, cache_flushed):
    cache = Cache([("127.0.0.1", memcached.port)], timeout=0.2, breaker_threshold=10)
    cache.set("w:frozen", b"v", 60)
    try:
        with stopped(memcached):
            for call in (lambda: cache.gets("w:frozen"), lambda: cache.get("w:frozen"),
                         lambda: cache.add("w:f2", b"v", 60), lambda: cache.incr("w:f3"),
                         lambda: cache.delete("w:f4")):
                started = time.monotonic()
                call()
                assert time.monotonic() - started < 0.6, "a call outlived 3 timeouts"
    finally:
        cache.close()


# Reading one large cached body through pymemcache with glibc's own malloc policy, and
# through app/memcached_wire.py with app/memory.py's thresholds (as a worker runs): a list
# page of 100 products with long descriptions is ~500 KB. Minor page faults per read are
# deterministic, unlike timings on a shared machine.
FAULTS = """
import os, resource, sys
from pymemcache.client.base import PooledClient
from app import memcached_wire as wire, memory
port, path, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = PooledClient(("127.0.0.1", port), connect_timeout=1, timeout=1, default_noreply=False)
client.set("w:large", os.urandom(size), expire=60)
if path == "wire":
    assert memory.release_large_blocks()
    read = lambda: wire.gets(client, "w:large")
else:
    read = lambda: client.gets("w:large")
for _ in range(10):
    read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    assert read()[0] is not None
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def _faults_per_read(port: int, path: str, size: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", FAULTS, str(port), path, str(size)],
                          capture_output=True, text=True, check=True, env=env)
    return float(done.stdout)


@pytest.mark.parametrize("size", [250_000, 500_000, 1_000_000])
def test_a_large_value_costs_no_more_page_faults_than_pymemcache(memcached, cache_flushed, size):
    pymemcache = _faults_per_read(memcached.port, "pymemcache", size)
    ours = _faults_per_read(memcached.port, "wire", size)
    # Appending each read to the buffer, with a 128 KiB mmap threshold: ~680 at 500 KB.
    assert ours <= pymemcache + 16, f"{pymemcache} page faults per read, {ours} with the wire"


def test_delete_many_answers_what_pymemcache_answers_for_each_key(pooled):
    keys = [f"w:dm:{n}" for n in range(7)]
    for k in keys[::2]:
        pooled.set(k, b"v", expire=60)
    assert wire.delete_many(pooled, keys) == [True, False, True, False, True, False, True]
    assert all(pooled.get(k) is None for k in keys)
    assert [pooled.delete(k, noreply=False) for k in keys] == [False] * 7
    assert wire.delete_many(pooled, []) == []
    assert len(pooled.client_pool.free) == 1, "every batch reused the one connection"


def test_delete_many_sends_batches_and_reads_every_reply(pooled, monkeypatch):
    monkeypatch.setattr(wire, "DELETE_BATCH", 3)
    keys = [f"w:batch:{n}" for n in range(8)]
    for k in keys[:5]:
        pooled.set(k, b"v", expire=60)
    assert wire.delete_many(pooled, keys) == [True] * 5 + [False] * 3
    # The connection went back ready: the next command reads its own reply.
    pooled.set("w:after", b"next", expire=60)
    assert wire.get(pooled, "w:after") == b"next"


def test_delete_many_of_many_keys_in_the_shipped_batches(pooled):
    keys = [f"w:many:{n:04d}:" + "k" * 200 for n in range(1000)]  # ~210 KB of commands
    for k in keys[:10]:
        pooled.set(k, b"v", expire=60)
    answers = wire.delete_many(pooled, keys)
    assert answers == [True] * 10 + [False] * 990


def test_delete_many_refuses_a_bad_key_before_it_sends_any(pooled):
    pooled.set("w:kept", b"v", expire=60)
    with pytest.raises(MemcacheIllegalInputError):
        wire.delete_many(pooled, ["w:kept", "has space"])
    assert pooled.get("w:kept") == b"v", "a delete went out before the refusal"


@pytest.mark.parametrize("reply, error", [
    (b"DELETED\r\nDELETED\r\nDELETED\r\n", MemcacheUnknownError),
    (b"DELETED\r\nSERVER_ERROR out of memory\r\n", MemcacheServerError),
    (b"DELETED\r\nMAYBE\r\n", MemcacheUnknownError),
], ids=["too-many", "server-error", "unknown"])
def test_a_broken_delete_many_reply_raises_at_once_and_drops_the_connection(reply, error):
    peer = _Peer(reply, hang_up=False)
    client = PooledClient(("127.0.0.1", peer.port), connect_timeout=1, timeout=1)
    try:
        started = time.monotonic()
        with pytest.raises(error):
            wire.delete_many(client, ["w:a", "w:b"])
        assert time.monotonic() - started < 0.5, "it waited for the timeout instead"
        assert client.client_pool.free == () and client.client_pool.used == ()
    finally:
        client.close()
        peer.close()


def test_too_few_delete_many_replies_time_out_and_drop_the_connection():
    peer = _Peer(b"DELETED\r\n", hang_up=False)
    client = PooledClient(("127.0.0.1", peer.port), connect_timeout=1, timeout=0.2)
    try:
        with pytest.raises(OSError):  # socket.timeout: the second reply never comes
            wire.delete_many(client, ["w:a", "w:b"])
        assert client.client_pool.free == () and client.client_pool.used == ()
    finally:
        client.close()
        peer.close()
