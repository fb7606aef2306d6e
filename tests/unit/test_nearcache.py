"""The near cache's slot versioning (pure logic, a fake clock; one test forks)."""

import fcntl
import os

import pytest

from app.config import Config, ConfigError
from app.nearcache import NearCache, Slots


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def slots():
    return Slots(1024)


@pytest.fixture
def clock():
    return Clock()


def fill(near, key, value):
    ticket = near.begin(key)
    near.put(key, value, ticket)


def test_an_entry_is_served_until_its_ttl_counted_from_the_record(slots, clock):
    near = NearCache(0.5, slots=slots, clock=clock)
    ticket = near.begin("k")
    clock.now += 0.3  # the read took 0.3 s
    near.put("k", b"v", ticket)
    assert near.get("k") == b"v"
    clock.now += 0.19
    assert near.get("k") == b"v"
    clock.now += 0.02  # 0.51 s after the record, not after the put
    assert near.get("k") is None
    assert len(near) == 0


def test_a_read_that_took_the_whole_ttl_is_not_kept(slots, clock):
    near = NearCache(0.5, slots=slots, clock=clock)
    ticket = near.begin("k")
    clock.now += 0.5
    near.put("k", b"v", ticket)
    assert len(near) == 0


def test_a_bump_in_another_worker_fails_the_entry_at_once(slots, clock):
    reader, writer = (NearCache(0.5, slots=slots, clock=clock) for _ in range(2))
    fill(reader, "k", b"old")
    fill(reader, "other", b"x")
    writer.bump(["k"])
    assert reader.get("k") is None
    assert reader.get("other") == b"x"  # another slot (1024 slots: no collision here)
    fill(reader, "k", b"new")
    assert reader.get("k") == b"new"


def test_a_value_read_before_a_bump_is_never_served(slots, clock):
    reader, writer = (NearCache(0.5, slots=slots, clock=clock) for _ in range(2))
    ticket = reader.begin("k")  # recorded, then the (old) value is read...
    writer.bump(["k"])  # ...the writer invalidates and bumps...
    reader.put("k", b"old", ticket)  # ...and the reader stores late
    assert reader.get("k") is None
    # Even if the put had raced past its own check, the hit check fails it:
    reader._entries["k"] = (b"old", ticket[0], ticket[1], ticket[2], ticket[3])
    assert reader.get("k") is None


def test_a_changed_epoch_tag_fails_the_entry(slots, clock):
    tags = {"k": 7}
    near = NearCache(0.5, slots=slots, clock=clock, tag=tags.get)
    fill(near, "k", b"v")
    assert near.get("k") == b"v"
    tags["k"] = None  # breaker open / bypassed
    assert near.get("k") is None
    fill(near, "k", b"from postgres")  # loaded after the record: kept under None
    assert near.get("k") == b"from postgres"
    tags["k"] = 8  # the node is back under a new epoch
    assert near.get("k") is None


def test_an_in_flight_read_under_the_old_epoch_is_not_served_after_the_change(slots, clock):
    tags = {"k": 7}
    near = NearCache(0.5, slots=slots, clock=clock, tag=tags.get)
    ticket = near.begin("k")
    tags["k"] = 8  # adopted while the read was in flight
    near.put("k", b"old epoch", ticket)
    assert near.get("k") is None


def test_entries_are_capped_oldest_first(slots, clock):
    near = NearCache(0.5, slots=slots, clock=clock, max_entries=3)
    for name in "abcd":
        fill(near, name, name.encode())
    assert len(near) == 3
    assert near.get("a") is None
    assert [near.get(n) for n in "bcd"] == [b"b", b"c", b"d"]


def test_entries_are_capped_by_their_bytes_oldest_first(slots, clock):
    near = NearCache(0.5, slots=slots, clock=clock, max_bytes=10)
    for name in "abc":
        fill(near, name, name.encode() * 4)  # 4 bytes each: the third evicts the first
    assert near.get("a") is None
    assert [near.get(n) for n in "bc"] == [b"bbbb", b"cccc"]
    fill(near, "big", b"x" * 11)  # larger than the whole budget: not kept, nothing evicted
    assert near.get("big") is None and len(near) == 2
    near.bump(["b"])
    fill(near, "d", b"dddddd")  # 4 + 6 fits once b's bytes are given back
    assert [near.get(n) for n in "cd"] == [b"cccc", b"dddddd"]


def test_slots_wrap_at_32_bits(slots, clock):
    near = NearCache(0.5, slots=slots, clock=clock)
    index = slots.index("k")
    slots.values[index] = 0xFFFFFFFF
    fill(near, "k", b"v")
    near.bump(["k"])
    assert slots.values[index] == 0
    assert near.get("k") is None


def test_forked_workers_share_the_table_and_increments_are_atomic(slots):
    """Four processes bump one slot concurrently: no increment may be lost.

    A lost increment can move a slot backwards and then back onto a value a
    reader recorded (ABA), so the read-modify-write must be atomic.
    """
    index, per_child, children = slots.index("hot"), 20_000, []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                for _ in range(per_child):
                    slots.bump([index])
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    assert slots.values[index] == 4 * per_child


BASE = {"PEREGRINE_DATABASE_URL": "postgresql://p@127.0.0.1:5432/p",
        "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211", "PEREGRINE_JWT_SECRET": "s" * 32}


def test_the_ttl_variable_is_validated():
    assert Config.from_env(BASE).near_cache_ttl == 0.5
    assert Config.from_env({**BASE, "PEREGRINE_NEAR_CACHE_TTL": "0"}).near_cache_ttl == 0
    assert Config.from_env({**BASE, "PEREGRINE_NEAR_CACHE_TTL": "0.2"}).near_cache_ttl == 0.2
    for bad in ("0.8", "-1", "soon"):
        with pytest.raises(ConfigError, match="PEREGRINE_NEAR_CACHE_TTL"):
            Config.from_env({**BASE, "PEREGRINE_NEAR_CACHE_TTL": bad})


# -- entries that hear other nodes (app/near_listener.py) ----------------------

def listening(slots, clock, *, since=None, tag=lambda key: 7):
    """A near cache whose listener began at ``since`` and has just heard a heartbeat;
    keys are read under epoch 7 unless ``tag`` says otherwise."""
    near = NearCache(0.5, slots=slots, clock=clock, listened_ttl=3.0, tag=tag)
    near.listening_since = clock.now if since is None else since
    near.heard_at = clock.now
    return near


def test_an_entry_outlives_the_ttl_while_heartbeats_come_back(slots, clock):
    near = listening(slots, clock)
    fill(near, "k", b"v")
    for _ in range(29):  # 2.9 s, a heartbeat heard every 0.1 s
        clock.now += 0.1
        near.heard_at = clock.now - 0.05
        assert near.get("k") == b"v"
    clock.now += 0.11  # 3.01 s after the record: the listened ttl is over
    near.heard_at = clock.now
    assert near.get("k") is None


def test_an_entry_past_the_ttl_dies_when_the_heartbeats_stop(slots, clock):
    near = listening(slots, clock)
    fill(near, "k", b"v")
    clock.now += 1.0
    near.heard_at = clock.now  # the last heartbeat heard, sent now
    assert near.get("k") == b"v"
    clock.now += 0.39
    assert near.get("k") == b"v"
    clock.now += 0.02  # 0.41 s since that heartbeat was sent: nothing proves we hear
    assert near.get("k") is None


def test_an_entry_recorded_before_the_session_listened_keeps_only_the_ttl(slots, clock):
    near = listening(slots, clock, since=clock.now + 0.2)  # a new session, after the record
    fill(near, "k", b"v")
    clock.now += 0.49
    near.heard_at = clock.now
    assert near.get("k") == b"v"  # the ttl
    clock.now += 0.02
    near.heard_at = clock.now
    assert near.get("k") is None


def test_a_heard_bump_fails_a_listened_entry_at_once(slots, clock):
    near = listening(slots, clock)
    fill(near, "k", b"v")
    clock.now += 1.0
    near.heard_at = clock.now
    NearCache(0.5, slots=slots, clock=clock).bump(["k"])  # the listener of another worker
    assert near.get("k") is None


def test_an_entry_read_while_its_memcached_node_was_bypassed_keeps_only_the_ttl(slots, clock):
    """A late announcement retires epochs; an entry tagged None would not notice."""
    near = listening(slots, clock, tag=lambda key: None)  # breaker open: read from Postgres
    fill(near, "k", b"v")
    clock.now += 0.49
    near.heard_at = clock.now
    assert near.get("k") == b"v"
    clock.now += 0.02
    near.heard_at = clock.now
    assert near.get("k") is None


def test_without_a_listener_the_listened_ttl_changes_nothing(slots, clock):
    near = NearCache(0.5, slots=slots, clock=clock, listened_ttl=3.0)  # never heard
    fill(near, "k", b"v")
    clock.now += 0.51
    assert near.get("k") is None


def test_announcements_split_under_the_notify_limit_and_parse_back():
    from app.queries.near import PAYLOAD_LIMIT, parse, payloads

    keys = [f"v1:product:{i:036d}" for i in range(1000)]
    found = payloads("host:1:ab", keys)
    assert len(found) > 1
    assert all(len(p.encode()) <= PAYLOAD_LIMIT for p in found)
    parsed = [parse(p) for p in found]
    assert {node for node, _ in parsed} == {"host:1:ab"}
    assert [k for _, ks in parsed for k in ks] == keys
    assert parse(payloads("n", [])[0]) == ("n", [])


def test_the_listened_ttl_is_configured_within_its_range():
    assert Config.from_env(BASE).near_cache_listened_ttl == 3.0
    assert Config.from_env({**BASE, "PEREGRINE_NEAR_CACHE_LISTENED_TTL": "0"}
                           ).near_cache_listened_ttl == 0.0
    for bad in ("61", "-1", "long"):
        with pytest.raises(ConfigError, match="PEREGRINE_NEAR_CACHE_LISTENED_TTL"):
            Config.from_env({**BASE, "PEREGRINE_NEAR_CACHE_LISTENED_TTL": bad})


def in_child(call):
    """Run ``call`` in a forked process (a sibling worker); return what it printed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.write(write, repr(call()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_what_the_listener_proves_counts_for_every_worker_of_the_node():
    slots = Slots(64)
    near = NearCache(0.5, slots=slots, listened_ttl=3.0)
    assert in_child(lambda: (NearCache(0.5, slots=slots).heard_at,
                             NearCache(0.5, slots=slots).listening_since)) == "(-inf, inf)"
    near.listening_since, near.heard_at = 10.0, 12.5  # set by the worker that listens
    assert in_child(lambda: (NearCache(0.5, slots=slots).heard_at,
                             NearCache(0.5, slots=slots).listening_since)) == "(12.5, 10.0)"


def test_one_process_of_a_node_holds_the_listener_lock_until_it_exits():
    slots = Slots(64)
    fd = slots.listener_lock.fileno()

    def try_lock():
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    holder_ready, release = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker that listens
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(holder_ready[1], b"x")
            os.read(release[0], 1)
        finally:
            os._exit(0)
    assert os.read(holder_ready[0], 1) == b"x"
    assert in_child(try_lock) == "False", "a sibling took the lock its holder still has"
    os.write(release[1], b"x")
    os.waitpid(pid, 0)
    assert in_child(try_lock) == "True", "the lock outlived the process that held it"
