"""bench/profiler.py's reading of py-spy's collapsed stacks."""

from __future__ import annotations

from bench.profiler import summarize

COLLAPSED = """\
serve (hotpath/worker.py:10);respond (hotpath/worker.py:20);app (app/factory.py:5) 6
serve (hotpath/worker.py:10);recv (gevent/_socketcommon.py:657) 3
serve (hotpath/worker.py:11);serve (hotpath/worker.py:10);recv (gevent/_socketcommon.py:651) 1
run (gevent/hub.py:647) 10
"""


def test_functions_count_every_sample_they_are_on_the_stack_once():
    total, inclusive, _ = summarize(COLLAPSED)
    assert total == 20
    counts = dict(inclusive)
    # Recursion (serve inside serve) counts the sample once; lines merge per function.
    assert counts["serve (hotpath/worker.py)"] == 10
    assert counts["recv (gevent/_socketcommon.py)"] == 4
    assert counts["app (app/factory.py)"] == 6
    assert inclusive[0] in (("serve (hotpath/worker.py)", 10), ("run (gevent/hub.py)", 10))


def test_own_time_is_the_innermost_frame_with_its_line():
    _, _, on_top = summarize(COLLAPSED)
    assert on_top[0] == ("run (gevent/hub.py:647)", 10)
    assert dict(on_top)["recv (gevent/_socketcommon.py:657)"] == 3
    assert dict(on_top)["recv (gevent/_socketcommon.py:651)"] == 1
    assert sum(count for _, count in on_top) == 20


def test_lines_that_are_not_stacks_are_skipped():
    total, inclusive, on_top = summarize("\n  \nno count here\nf (a.py:1) 2\n")
    assert total == 2 and inclusive == [("f (a.py)", 2)] and on_top == [("f (a.py:1)", 2)]
