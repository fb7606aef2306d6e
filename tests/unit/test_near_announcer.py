"""The announcer's bookkeeping (app/near_listener.py): a fake session, real greenlets."""

import gevent
import gevent.event

from app.near_listener import Announcer
from app.queries.near import parse


class Session:
    """Records each announcement; the first one can be held in flight."""

    def __init__(self, hold_first=False, fail_first=False):
        self.sent = []
        self.release = gevent.event.Event()
        self.in_flight = gevent.event.Event()
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
            self.release.wait(2)
        _, payloads = params
        self.sent.append([k for p in payloads for k in parse(p)[1]])

    def close(self):
        pass


class Pool:
    def __init__(self, session):
        self.session = session

    def connect_dedicated(self, application_name):
        return self.session


def test_a_key_announced_again_while_in_flight_goes_out_again_after():
    session = Session(hold_first=True)
    announcer = Announcer(Pool(session), "node")
    announcer.announce(["k", "j"])
    assert session.in_flight.wait(2)  # "k" is being sent...
    announcer.announce(["k"])  # ...when a later write, after its deletes, hands it in again
    session.release.set()
    announcer.close(timeout=2)
    assert session.sent == [["k", "j"], ["k"]]


def test_keys_of_a_failed_announcement_are_sent_on_the_retry():
    session = Session(fail_first=True)
    announcer = Announcer(Pool(session), "node")
    announcer.announce(["a", "b"])
    announcer.announce(["c"])
    announcer.close(timeout=3)
    assert [k for batch in session.sent for k in batch] == ["a", "b", "c"]


def test_writers_of_one_moment_share_one_announcement():
    session = Session()
    announcer = Announcer(Pool(session), "node")
    for k in ("a", "b", "a"):
        announcer.announce([k])
    announcer.close(timeout=2)
    assert session.sent == [["a", "b"]]


class Lost:
    """Stands in for the cache's lost-invalidation path: records what it was handed."""

    def __init__(self):
        self.keys = []
        self.called = gevent.event.Event()

    def __call__(self, keys):
        self.keys.append(sorted(keys))
        self.called.set()


def test_keys_not_announced_by_their_deadline_are_handed_to_lost_once():
    session = Session(hold_first=True)  # the session stalls on the first announcement
    lost = Lost()
    announcer = Announcer(Pool(session), "node", lost=lost, deadline=0.05)
    announcer.announce(["k", "j"])
    assert session.in_flight.wait(2)
    announcer.announce(["m"])  # waits behind the stalled one
    assert lost.called.wait(2), "a stalled announcement was never given up on"
    gevent.sleep(0.2)  # several deadlines later: nothing is handed over twice
    assert lost.keys == [["j", "k", "m"]]
    session.release.set()  # the session recovers: the keys still go out
    announcer.close(timeout=2)
    assert session.sent == [["k", "j"], ["m"]]
    assert lost.keys == [["j", "k", "m"]], "keys announced after all were handed over again"


def test_keys_announced_in_time_are_never_handed_to_lost():
    session = Session()
    lost = Lost()
    announcer = Announcer(Pool(session), "node", lost=lost, deadline=0.05)
    for k in ("a", "b", "c"):
        announcer.announce([k])
        gevent.sleep(0.03)
    gevent.sleep(0.2)
    announcer.close(timeout=2)
    assert [k for batch in session.sent for k in batch] == ["a", "b", "c"]
    assert lost.keys == []


def test_keys_of_a_failing_session_are_handed_to_lost_at_their_deadline():
    session = Session(fail_first=True)  # fails once, then the retry waits 0.1 s
    lost = Lost()
    announcer = Announcer(Pool(session), "node", lost=lost, deadline=0.05)
    announcer.announce(["a"])
    assert lost.called.wait(2)
    announcer.close(timeout=2)
    assert lost.keys == [["a"]]
    assert session.sent == [["a"]]  # and sent on the retry


def test_keys_still_unannounced_when_the_worker_exits_are_handed_to_lost():
    session = Session(hold_first=True)  # never released: stuck for good
    lost = Lost()
    announcer = Announcer(Pool(session), "node", lost=lost, deadline=30)
    announcer.announce(["x"])
    assert session.in_flight.wait(2)
    announcer.close(timeout=0.1)
    assert lost.keys == [["x"]]
