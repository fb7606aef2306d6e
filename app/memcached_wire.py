"""The hot memcached commands, spoken directly: get, gets, incr, add, cas, delete.

And one pipelined command, :func:`delete_many`: the deletes of a cache
invalidation round, sent in one write and answered in order.

PERF: pymemcache's ``PooledClient.gets`` runs ~88 Python calls per key (the
pool's context manager, key checks, ``_fetch_cmd``'s generic reply loop,
``sendall``'s ``SO_SNDBUF`` query, two ``_readline`` calls): ~99k
instructions per call under gevent, where the send, the wait and the recv
themselves are ~14k (callgrind, one key, 340-byte value). A memcached-hit
product read cost 362k instructions in the whole worker, the near-cache hit
231k (bench/instructions.py). These functions borrow the same pooled
pymemcache connection, so connecting, the pool's size and idle limits,
timeouts and every other command stay pymemcache's, and they answer exactly
what pymemcache's methods would.

A reply is read to its exact end (the value's length is in its header), so
the connection goes back to the pool ready for the next command; anything
unexpected raises a ``MemcacheError`` (or the socket's ``OSError``), and the
connection is then closed and dropped, never reused half-read.
"""

from __future__ import annotations

import re
from typing import NoReturn

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
    MemcacheUnknownError,
)

_RECV = 65536
# What pymemcache's check_key accepts, for the keys this service builds: 1-250
# printable ASCII characters, no whitespace or control characters.
_KEY = re.compile(rb"[\x21-\x7e]{1,250}")
_END = b"END\r\n"


def get(pooled: PooledClient, key: str) -> bytes | None:
    """``pooled.get(key)``: the value, or None when missing."""
    return _borrowed(pooled, b"get ", key, _value)[0]


def gets(pooled: PooledClient, key: str) -> tuple[bytes | None, bytes | None]:
    """``pooled.gets(key)``: ``(value, cas token)``, ``(None, None)`` when missing."""
    return _borrowed(pooled, b"gets ", key, _value_and_token)


def incr(pooled: PooledClient, key: str, delta: int = 1) -> int | None:
    """``pooled.incr(key, delta, noreply=False)``: the new value, None when missing."""
    if not isinstance(delta, int) or delta < 0:
        raise MemcacheIllegalInputError(f"delta must be a non-negative int: {delta!r}")
    return _borrowed(pooled, b"incr ", key, _number, b" %d" % delta)


def add(pooled: PooledClient, key: str, value: bytes, expire: int = 0) -> bool:
    """``pooled.add(key, value, expire, noreply=False)``: True stored, False present."""
    return _borrowed(pooled, b"add ", key, _add_reply, _stored(value, expire))


def cas(pooled: PooledClient, key: str, value: bytes, token: bytes, expire: int = 0):
    """``pooled.cas(..., noreply=False)``: True stored, False changed since, None missing."""
    if not token.isdigit():
        raise MemcacheIllegalInputError(f"cas token must be digits: {token!r}")
    return _borrowed(pooled, b"cas ", key, _cas_reply, _stored(value, expire, token))


def delete(pooled: PooledClient, key: str) -> bool:
    """``pooled.delete(key, noreply=False)``: True deleted, False was not there."""
    return _borrowed(pooled, b"delete ", key, _delete_reply)


#: Deletes per write in :func:`delete_many`. Their replies (at most 11 bytes
#: each) then always fit the socket's receive buffer while the write goes
#: out: memcached answers as it reads, and a reply it cannot send would stop
#: it reading the rest.
DELETE_BATCH = 200


def delete_many(pooled: PooledClient, keys: list[str]) -> list[bool]:
    """``pooled.delete(k, noreply=False)`` for each key: True deleted, False was not there.

    PERF: one write and one wait per ``DELETE_BATCH`` keys. One delete after
    another, an invalidation round after orders on 64 connections (~28 keys)
    waited ~9.6 ms for memcached, a round trip per key on a busy core, and
    every writer of the round waited for it (bench/README.md, "Orders: the
    invalidation round's deletes in one write").
    """
    raws = [_checked(k) for k in keys]  # all refused before any is sent
    answers: list[bool] = []
    for start in range(0, len(raws), DELETE_BATCH):
        batch = raws[start:start + DELETE_BATCH]
        command = b"".join([b"delete " + raw + b"\r\n" for raw in batch])
        answers += _exchange(pooled, command, _delete_replies, len(batch))
    return answers


def _stored(value: bytes, expire: int, token: bytes = b"") -> bytes:
    """A storage command's tail: `` <flags> <exptime> <bytes> [<cas>]\r\n<data>``.

    Flags 0: what pymemcache's default serde writes for bytes (and reads back as bytes).
    """
    if not isinstance(value, bytes):
        raise MemcacheIllegalInputError(f"values are bytes, not {type(value).__name__}")
    if not isinstance(expire, int):  # as pymemcache: 0.5 must not become 0, "never"
        raise MemcacheIllegalInputError(f"expire must be an int: {expire!r}")
    head = b" 0 %d %d" % (expire, len(value))
    return head + (b" " + token if token else b"") + b"\r\n" + value


def _borrowed(pooled, verb: bytes, key: str, read, tail: bytes = b""):
    raw = _checked(key)
    return _exchange(pooled, verb + raw + tail + b"\r\n", read, raw)


def _exchange(pooled, command: bytes, read, expected):
    """Send ``command`` on a borrowed connection; ``read(client, data, expected)`` its reply."""
    pool = pooled.client_pool
    client = pool.get()
    try:
        result = read(client, _request(client, command), expected)
    except BaseException:
        pool.destroy(client)  # closes it: a half-read reply must not be reused
        raise
    pool.release(client)
    return result


def _checked(key: str) -> bytes:
    try:
        raw = key.encode("ascii")
    except UnicodeEncodeError:
        raise MemcacheIllegalInputError(f"Non-ASCII key: {key!r}") from None
    if _KEY.fullmatch(raw) is None:
        raise MemcacheIllegalInputError(f"Key is empty, too long or has whitespace: {key!r}")
    return raw


def _request(client, command: bytes) -> bytes:
    """Send ``command``; return the first bytes of the reply."""
    sock = client.sock
    if sock is None:
        client._connect()  # pymemcache's own connect: timeouts, TCP_NODELAY, keepalive
        sock = client.sock
    # PERF: gevent's sendall() asks getsockopt(SO_SNDBUF) on every call; one
    # send() takes a command this short.
    sent = sock.send(command)
    if sent < len(command):
        sock.sendall(command[sent:])
    return _more(sock, b"")


def _more(sock, data: bytes) -> bytes:
    chunk = sock.recv(_RECV)
    if not chunk:
        raise MemcacheUnexpectedCloseError()
    return data + chunk


def _rest(sock, data: bytes, total: int) -> bytes:
    """``data`` and what follows it, until ``total`` bytes have arrived.

    The pieces are joined once: appending each read to the buffer copied a
    large value again on every read (a 500 KB list page: ~680 page faults).
    """
    chunks = [data]
    have = len(data)
    while have < total:
        chunk = sock.recv(max(_RECV, total - have))
        if not chunk:
            raise MemcacheUnexpectedCloseError()
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def _line(client, data: bytes) -> tuple[bytes, int]:
    """The reply's first line and where it ends, reading until it is complete."""
    eol = data.find(b"\r\n")
    while eol < 0:
        data = _more(client.sock, data)
        eol = data.find(b"\r\n")
    return data, eol


def _raise_for(line: bytes) -> NoReturn:
    if line == b"ERROR" or line.startswith(b"ERROR "):
        raise MemcacheUnknownCommandError(line)
    if line.startswith(b"CLIENT_ERROR"):
        raise MemcacheClientError(line[13:])
    if line.startswith(b"SERVER_ERROR"):
        raise MemcacheServerError(line[13:])
    raise MemcacheUnknownError(line[:32])


def _value(client, data: bytes, key: bytes) -> tuple[bytes | None, None]:
    """A one-key ``get`` reply: ``(value, None)``, ``(None, None)`` when missing."""
    return _one_value(client, data, key, 4)


def _value_and_token(client, data: bytes, key: bytes) -> tuple[bytes | None, bytes | None]:
    """A one-key ``gets`` reply: ``(value, cas token)``, ``(None, None)`` when missing."""
    return _one_value(client, data, key, 5)


def _one_value(client, data: bytes, key: bytes, fields: int):
    if data == _END:  # PERF: the usual miss, one recv
        return None, None
    data, eol = _line(client, data)
    line = data[:eol]
    if line == b"END":
        if len(data) != eol + 2:
            raise MemcacheUnknownError(data[:32])
        return None, None
    header = line.split(b" ")
    if header[0] != b"VALUE" or len(header) != fields:
        _raise_for(line)
    if header[1] != key:
        # A connection out of step with its replies: fail, never answer another key's value.
        raise MemcacheUnknownError(b"a reply for another key: " + header[1][:64])
    try:
        length = int(header[3])
    except ValueError:
        raise MemcacheUnknownError(line[:32]) from None
    start = eol + 2
    end = start + length
    total = end + 7  # b"\r\nEND\r\n"
    if len(data) < total:
        data = _rest(client.sock, data, total)
    if len(data) != total or data[end:] != b"\r\n" + _END:
        raise MemcacheUnknownError(data[end:end + 32])
    return data[start:end], (header[4] if fields == 5 else None)


def _reply_line(client, data: bytes) -> bytes:
    """A one-line reply, which must be the whole of what arrived."""
    data, eol = _line(client, data)
    if eol + 2 != len(data):
        raise MemcacheUnknownError(data[:32])
    return data[:eol]


def _status_reply(answers: dict):
    """A reader of a one-line status reply: ``answers[line]``, or the error it names."""

    def read(client, data: bytes, key: bytes):
        line = _reply_line(client, data)
        try:
            return answers[line]
        except KeyError:
            _raise_for(line)

    return read


_add_reply = _status_reply({b"STORED": True, b"NOT_STORED": False})
_cas_reply = _status_reply({b"STORED": True, b"EXISTS": False, b"NOT_FOUND": None})
_DELETE_ANSWERS = {b"DELETED": True, b"NOT_FOUND": False}
_delete_reply = _status_reply(_DELETE_ANSWERS)


def _delete_replies(client, data: bytes, count: int) -> list[bool]:
    """``count`` delete replies, in order; they must be the whole of what arrived."""
    answers: list[bool] = []
    start = 0
    while len(answers) < count:
        eol = data.find(b"\r\n", start)
        if eol < 0:
            data = _more(client.sock, data)
            continue
        line = data[start:eol]
        answer = _DELETE_ANSWERS.get(line)
        if answer is None:
            _raise_for(line)
        answers.append(answer)
        start = eol + 2
    if start != len(data):
        raise MemcacheUnknownError(data[start:start + 32])
    return answers


def _number(client, data: bytes, key: bytes) -> int | None:
    """An ``incr`` reply: the new value, or None for NOT_FOUND."""
    line = _reply_line(client, data)
    if line.isdigit():
        return int(line)
    if line == b"NOT_FOUND":
        return None
    _raise_for(line)
