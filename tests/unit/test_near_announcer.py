"""The announcer's bookkeeping (app/near_listener.py): fake sessions, real greenlets."""

import gevent
import gevent.event

from app.near_listener import Announcer
from app.queries.near import parse


class Session:
    """Records each announcement; the first one can be held in flight, or fail."""

    def __init__(self, hold_first=False, fail_first=False):
        self.sent = []
        self.release = gevent.event.Event()
        self.in_flight = gevent.event.Event()
        self.closed = False
        self._hold, self._fail = hold_first, fail_first

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params):
        if self._fail:
            self._fail = False
            raise OSError("connection reset")
        self.in_flight.set()
        if self._hold:
            self._hold = False
            self.release.wait(10)
        _, payloads = params
        self.sent.append([k for p in payloads for k in parse(p)[1]])

    def close(self):
        self.closed = True


class Pool:
    """Hands out the given sessions in turn, the last one again and again."""

    def __init__(self, *sessions):
        self.sessions = list(sessions)
        self.connects = 0

    def connect_dedicated(self, application_name):
        self.connects += 1
        return self.sessions.pop(0) if len(self.sessions) > 1 else self.sessions[0]


class Lost:
    """Stands in for the cache's lost-invalidation path: records what it was handed."""

    ANSWER_AT = 1234.5  # when the writer may answer, as the epochs would say

    def __init__(self):
        self.keys = []

    def __call__(self, keys):
        self.keys.append(sorted(keys))
        return self.ANSWER_AT


def sent_keys(session):
    return [k for batch in session.sent for k in batch]


def test_an_announcement_returns_once_its_keys_are_committed():
    session = Session(hold_first=True)
    announcer = Announcer(Pool(session), "node", deadline=5)
    writer = gevent.spawn(announcer.announce, ["k"])
    assert session.in_flight.wait(2)
    gevent.sleep(0.05)
    assert not writer.ready(), "the write answered before its announcement committed"
    session.release.set()
    assert writer.get(timeout=2) == 0.0
    assert session.sent == [["k"]]
    announcer.close()


def test_a_key_announced_again_while_in_flight_goes_out_again_after():
    session = Session(hold_first=True)
    announcer = Announcer(Pool(session), "node", deadline=5)
    first = gevent.spawn(announcer.announce, ["k", "j"])
    assert session.in_flight.wait(2)  # "k" is being sent...
    second = gevent.spawn(announcer.announce, ["k"])  # ...when a later write hands it in again
    gevent.sleep(0.05)
    session.release.set()
    assert first.get(timeout=2) == 0.0 and second.get(timeout=2) == 0.0
    assert session.sent == [["k", "j"], ["k"]]
    announcer.close()


def test_writers_of_one_moment_share_one_announcement():
    session = Session()
    announcer = Announcer(Pool(session), "node", deadline=5)
    writers = [gevent.spawn(announcer.announce, [k]) for k in ("a", "b", "a")]
    assert [w.get(timeout=2) for w in writers] == [0.0, 0.0, 0.0]
    assert session.sent == [["a", "b"]]
    announcer.close()


def test_keys_of_a_failed_announcement_are_sent_on_the_retry():
    session = Session(fail_first=True)
    lost = Lost()
    announcer = Announcer(Pool(session), "node", lost=lost, deadline=5)
    assert announcer.announce(["a", "b"]) == 0.0
    assert sent_keys(session) == ["a", "b"]
    assert lost.keys == []
    announcer.close()


def test_keys_not_announced_by_the_deadline_go_to_lost_and_still_go_out_later():
    session = Session(hold_first=True)  # the session stalls on the first announcement
    lost = Lost()
    announcer = Announcer(Pool(session), "node", lost=lost, deadline=0.05, send_timeout=30)
    assert announcer.announce(["k", "j"]) == Lost.ANSWER_AT  # the writer waits for the epoch
    assert announcer.announce(["m"]) == Lost.ANSWER_AT  # behind the stalled one
    assert lost.keys == [["j", "k"], ["m"]]
    session.release.set()  # the session recovers: the keys still go out
    gevent.sleep(0.1)
    assert session.sent == [["k", "j"], ["m"]]
    assert announcer.announce(["n"]) == 0.0
    assert lost.keys == [["j", "k"], ["m"]], "keys announced in time were handed to lost"
    announcer.close()


def test_a_send_that_hangs_abandons_its_session_and_reconnects():
    frozen, healthy = Session(hold_first=True), Session()  # the first never answers
    pool = Pool(frozen, healthy)
    lost = Lost()
    announcer = Announcer(pool, "node", lost=lost, deadline=0.05, send_timeout=0.1)
    assert announcer.announce(["a"]) == Lost.ANSWER_AT
    gevent.sleep(0.5)  # the send times out, the sender reconnects and sends again
    assert frozen.closed and pool.connects == 2
    assert healthy.sent == [["a"]]
    assert announcer.announce(["b"]) == 0.0
    announcer.close()
