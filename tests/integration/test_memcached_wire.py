"""app/memcached_wire.py answers what pymemcache's own methods answer, on a real memcached,
and never hands a half-read connection back to the pool."""

import socket
import threading
import time

import pytest
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheError,
    MemcacheIllegalInputError,
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
    assert wire.add(pooled, "w:ttl", b"v", 1) is True
    _, token = wire.gets(pooled, "w:ttl")
    assert wire.cas(pooled, "w:ttl", b"v2", token, 1) is True
    deadline = time.monotonic() + 5
    while wire.get(pooled, "w:ttl") is not None:
        assert time.monotonic() < deadline, "a 1 s value outlived 5 s"
        time.sleep(0.2)


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
    """A TCP peer that answers every command with ``reply`` bytes, then maybe hangs up."""

    def __init__(self, reply: bytes, close: bool):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply, self.close = reply, close
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.sendall(self.reply)
            if self.close:
                conn.close()


@pytest.mark.parametrize("reply, close, error", [
    (b"VALUE w:k 0 10 7\r\nabc", True, MemcacheUnexpectedCloseError),
    (b"VALUE w:k 0 3 7\r\nabcd\r\nEND\r\n", False, MemcacheUnknownError),
    (b"VALUE w:k 0 3 7\r\nabc\r\nEND\r\nVALUE", False, MemcacheUnknownError),
    (b"SERVER_ERROR out of memory\r\n", False, Exception),
    (b"", True, MemcacheUnexpectedCloseError),
], ids=["cut-short", "wrong-length", "trailing-bytes", "server-error", "hung-up"])
def test_a_broken_reply_raises_and_drops_the_connection(reply, close, error):
    peer = _Peer(reply, close)
    client = PooledClient(("127.0.0.1", peer.port), connect_timeout=1, timeout=1)
    try:
        with pytest.raises(error):
            wire.gets(client, "w:k")
        assert client.client_pool.free == () and client.client_pool.used == ()
    finally:
        client.close()
        peer.listener.close()


@pytest.mark.parametrize("reply", [b"STORED\r\nSTORED\r\n", b"SERVER_ERROR out of memory\r\n",
                                   b"MAYBE\r\n"], ids=["two-lines", "server-error", "unknown"])
@pytest.mark.parametrize("command", ["add", "cas", "delete", "incr"])
def test_a_broken_one_line_reply_raises_and_drops_the_connection(reply, command):
    peer = _Peer(reply, close=False)
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
        peer.listener.close()


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
