"""Group invalidation (app/coalescing.py): real greenlets, forced interleavings."""

import time

import gevent
import gevent.event
import pytest

from app.coalescing import Coalescer, InvalidationFailed
from tests.support.metrics import CountingMetrics

PATIENT = 30.0  # callers wait for a held round: the batching itself is under test


class Work:
    """Records each round; a round can be held until released."""

    def __init__(self):
        self.rounds = []  # (keys, lists) per round, in the order they began
        self.runners = []  # the greenlet that ran each
        self.hold = None  # an Event the next round waits on, when set
        self.started = gevent.event.Event()
        self.fail_with = None

    def __call__(self, keys, lists):
        self.rounds.append((keys, lists))
        self.runners.append(gevent.getcurrent())
        self.started.set()
        hold, self.hold = self.hold, None
        if hold is not None:
            assert hold.wait(5), "never released"
        if self.fail_with is not None:
            raise self.fail_with


def held_round(work, coalescer, keys):
    """Start a round for ``keys`` in a greenlet and return once it is inside the work."""
    release = gevent.event.Event()
    work.hold, work.started = release, gevent.event.Event()
    runner = gevent.spawn(coalescer.submit, keys, False)
    assert work.started.wait(5)
    return runner, release


def test_a_lone_caller_runs_its_round_at_once():
    work, metrics = Work(), CountingMetrics()
    coalescer = Coalescer(work, metrics, "inv", patience=PATIENT)
    coalescer.submit(["a", "b", "a"], True)
    assert work.rounds == [(["a", "b"], True)]
    coalescer.submit(["c"], False)
    assert work.rounds[1] == (["c"], False)
    assert metrics["inv.rounds"] == 2 and metrics["inv.joined"] == 0


def test_callers_during_a_round_share_one_later_round_and_wait_for_it():
    work, metrics = Work(), CountingMetrics()
    coalescer = Coalescer(work, metrics, "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    done = []
    late = [gevent.spawn(lambda k=k: (coalescer.submit([k], k == "c"), done.append(k)))
            for k in ("b", "c", "d")]
    gevent.sleep(0.05)
    assert done == []  # the round in progress began before they asked
    assert work.rounds == [(["a"], False)]
    release.set()
    first.get(timeout=5)
    gevent.joinall(late, timeout=5, raise_error=True)
    assert work.rounds == [(["a"], False), (["b", "c", "d"], True)]
    assert sorted(done) == ["b", "c", "d"]
    assert metrics["inv.rounds"] == 2 and metrics["inv.joined"] == 3


def test_a_caller_never_returns_before_a_round_that_began_after_it_asked():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    second_hold = gevent.event.Event()
    work.hold = second_hold  # the round after this one is held too
    waiter = gevent.spawn(coalescer.submit, ["b"], False)
    release.set()
    first.get(timeout=5)
    gevent.sleep(0.05)
    assert work.rounds[-1] == (["b"], False)  # its round has begun ...
    assert not waiter.ready()  # ... and it still waits for it to end
    second_hold.set()
    waiter.get(timeout=5)


def test_a_failed_round_fails_every_caller_in_it_and_the_next_round_still_runs():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    work.fail_with = RuntimeError("memcached on fire")
    late = [gevent.spawn(coalescer.submit, [k], False) for k in ("b", "c")]
    gevent.sleep(0)
    release.set()
    with pytest.raises(InvalidationFailed) as raised:
        first.get(timeout=5)
    assert str(raised.value.__cause__) == "memcached on fire"
    gevent.joinall(late, timeout=5)
    # The next round failed the same way for both of its callers, each with
    # an exception of its own.
    errors = [g.exception for g in late]
    assert all(isinstance(e, InvalidationFailed) for e in errors)
    assert errors[0] is not errors[1] and errors[0].__cause__ is errors[1].__cause__
    work.fail_with = None
    coalescer.submit(["d"], False)
    assert work.rounds[-1] == (["d"], False)


def test_a_waiter_killed_while_waiting_does_not_strand_the_keys_of_its_round():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    killed = gevent.spawn(coalescer.submit, ["b"], False)
    gevent.sleep(0)
    killed.kill()
    other = gevent.spawn(coalescer.submit, ["c"], True)
    gevent.sleep(0)
    release.set()
    first.get(timeout=5)
    other.get(timeout=5)
    assert (["b", "c"], True) in work.rounds


def test_a_runner_killed_mid_round_has_its_whole_round_done_again_before_its_waiters_return():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, _ = held_round(work, coalescer, ["a"])
    waiter = gevent.spawn(coalescer.submit, ["b"], False)
    gevent.sleep(0)
    first.kill()  # e.g. the worker's graceful timeout, mid-invalidation
    waiter.get(timeout=5)
    assert work.rounds[0] == (["a"], False)
    assert sorted(work.rounds[1][0]) == ["a", "b"]  # "a" again: it may not have finished
    # The killed round's callers would have waited for the carried one too.
    coalescer.submit(["c"], False)
    assert work.rounds[-1] == (["c"], False)


def test_the_callers_of_a_round_killed_in_its_own_greenlet_wait_for_it_to_be_done_again():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    waiters = [gevent.spawn(coalescer.submit, [k], False) for k in ("b", "c")]
    gevent.sleep(0)
    work.hold, work.started = gevent.event.Event(), gevent.event.Event()
    release.set()
    first.get(timeout=5)
    assert work.started.wait(5)  # the round of "b" and "c", in a greenlet of its own
    assert work.runners[1] not in waiters
    again = work.hold = gevent.event.Event()  # the round that does it again is held
    work.runners[1].kill()  # e.g. at worker exit, mid-invalidation
    gevent.sleep(0.05)
    assert work.rounds[1:] == [(["b", "c"], False), (["b", "c"], False)]
    assert not any(w.ready() for w in waiters)  # not before that round is done
    again.set()
    gevent.joinall(waiters, timeout=5, raise_error=True)


def test_a_caller_with_nothing_to_invalidate_during_a_round_still_gets_a_round():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    empty = gevent.spawn(coalescer.submit, [], False)  # e.g. only the replica mark
    gevent.sleep(0)
    release.set()
    first.get(timeout=5)
    empty.get(timeout=5)
    assert work.rounds == [(["a"], False), ([], False)]


def test_settle_waits_for_the_rounds_running_and_promised():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=PATIENT)
    first, release = held_round(work, coalescer, ["a"])
    gevent.spawn(coalescer.submit, ["b"], False)
    gevent.sleep(0)
    assert coalescer.settle(0.05) is False  # still held
    gevent.spawn_later(0.05, release.set)
    assert coalescer.settle(5) is True
    assert [keys for keys, _ in work.rounds] == [["a"], ["b"]]
    first.get(timeout=5)


def test_each_caller_gets_what_its_round_returned():
    results = iter(["first", "second"])
    coalescer = Coalescer(lambda keys, lists: next(results), CountingMetrics(), "inv")
    assert coalescer.submit(["a"], False) == "first"
    assert coalescer.submit(["b"], False) == "second"


def test_a_caller_does_not_wait_long_for_a_slow_round_and_runs_its_own_beside_it():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=0.05)
    first, release = held_round(work, coalescer, ["a"])  # e.g. timeouts on a failing node
    late = gevent.spawn(coalescer.submit, ["b"], False)
    late.get(timeout=5)  # done while the first is still held
    assert not first.ready()
    assert work.rounds == [(["a"], False), (["b"], False)]
    release.set()
    first.get(timeout=5)


def test_callers_that_come_while_a_round_is_quick_still_share_the_next():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=0.5)
    first, release = held_round(work, coalescer, ["a"])
    late = [gevent.spawn(coalescer.submit, [k], False) for k in ("b", "c")]
    gevent.sleep(0.01)
    release.set()  # well within the patience
    gevent.joinall([first, *late], timeout=5, raise_error=True)
    assert work.rounds == [(["a"], False), (["b", "c"], False)]


def test_settle_waits_for_a_slow_round_that_a_quicker_one_ran_beside():
    work = Work()
    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=0.05)
    first, release = held_round(work, coalescer, ["a"])  # slow
    coalescer.submit(["b"], False)  # after 50 ms: a round of its own, done at once
    assert not first.ready()
    assert coalescer.settle(0.05) is False  # "a" is still running
    gevent.spawn_later(0.05, release.set)
    assert coalescer.settle(5) is True
    first.get(timeout=5)


def test_a_runner_returns_when_its_round_ends_as_a_caller_gives_up_waiting_for_it():
    # One loop iteration both ends the round (its work was asleep until 10 ms)
    # and expires the patience of a caller waiting for it (until 50 ms): the
    # runner then waits on a round it has just set done while the caller
    # unlinks. gevent used to lose the runner there (app/event_wait.py).
    def work(keys, lists):
        gevent.sleep(0.01)

    coalescer = Coalescer(work, CountingMetrics(), "inv", patience=0.05)
    runner = gevent.spawn(coalescer.submit, ["a"], False)
    caller = gevent.spawn(coalescer.submit, ["b"], False)
    gevent.sleep(0)  # the runner is in its work, the caller waits for that round
    time.sleep(0.1)  # block the loop past both deadlines
    gevent.joinall([runner, caller], timeout=2, raise_error=True)
    assert runner.ready() and caller.ready()


def test_each_round_reports_how_long_its_writers_waited_for_it():
    metrics = CountingMetrics()

    def slow_work(keys, lists):
        began = time.monotonic()
        while time.monotonic() - began < 0.02:  # no timer: exactly this long at least
            gevent.sleep(0.001)
        return len(keys)

    coalescer = Coalescer(slow_work, metrics, "inv", patience=PATIENT)
    assert coalescer.submit(["a"], False) == 1
    assert coalescer.submit(["b", "c"], False) == 2
    assert len(metrics.timings["inv.round_ms"]) == 2
    assert all(ms >= 20 for ms in metrics.timings["inv.round_ms"])
