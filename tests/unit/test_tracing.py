"""W3C traceparent / tracestate rules (app/tracing.py) and the ids this server makes up."""

from __future__ import annotations

import os
import re

import pytest

from app import ids, tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
OURS = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")


@pytest.mark.parametrize(("header", "expected"), [
    (VALID, (TRACE_ID, "01")),
    (f"00-{TRACE_ID}-{PARENT_ID}-00", (TRACE_ID, "00")),
    (f"00-{TRACE_ID}-{PARENT_ID}-09", (TRACE_ID, "09")),  # unknown flags: still valid
    # A later version: read as far as version 00 goes; more fields after a dash.
    (f"cc-{TRACE_ID}-{PARENT_ID}-01", (TRACE_ID, "01")),
    (f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-adds", (TRACE_ID, "01")),
])
def test_valid_traceparents_are_read(header, expected):
    assert tracing.parse_traceparent(header) == expected


@pytest.mark.parametrize("header", [
    None,
    "",
    "garbage",
    f"ff-{TRACE_ID}-{PARENT_ID}-01",                   # version ff is invalid
    f"00-{'0' * 32}-{PARENT_ID}-01",                   # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",                    # all-zero parent id
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",           # hex must be lower case
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra",             # version 00 has no more fields
    f"00-{TRACE_ID}-{PARENT_ID}-01 ",
    f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",              # short trace id
    f"00-{TRACE_ID}x-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-1",
    f"00_{TRACE_ID}_{PARENT_ID}_01",
    f"cc-{TRACE_ID}-{PARENT_ID}-01.more",              # a later version continues with "-"
    f"0-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-01," + VALID,          # two headers folded into one
    f"cc-{TRACE_ID}-{PARENT_ID}-01-" + "x" * 600,      # oversized
    "x" * 10_000,
])
def test_invalid_traceparents_are_refused(header):
    assert tracing.parse_traceparent(header) is None


def test_a_valid_traceparent_continues_with_a_new_span_of_ours():
    trace_id, traceparent, continued = tracing.continue_trace(VALID)
    assert continued and trace_id == TRACE_ID
    match = OURS.fullmatch(traceparent)
    assert match and match[1] == TRACE_ID and match[2] != PARENT_ID
    assert traceparent.endswith("-01")  # the caller's sampling decision is kept


def test_only_the_sampled_flag_is_handed_on():
    # Version 00 defines one flag; the others must go out as zero.
    assert tracing.continue_trace(f"00-{TRACE_ID}-{PARENT_ID}-fe")[1].endswith("-00")
    assert tracing.continue_trace(f"00-{TRACE_ID}-{PARENT_ID}-ff")[1].endswith("-01")


@pytest.mark.parametrize("header", [None, "garbage", f"ff-{TRACE_ID}-{PARENT_ID}-01",
                                    f"00-{'0' * 32}-{PARENT_ID}-01"])
def test_anything_else_starts_a_new_unsampled_trace(header):
    trace_id, traceparent, continued = tracing.continue_trace(header)
    assert not continued and trace_id != TRACE_ID
    match = OURS.fullmatch(traceparent)
    assert match and match[1] == trace_id and traceparent.endswith("-00")
    assert tracing.parse_traceparent(traceparent) is not None  # what we send is valid


def test_every_request_gets_its_own_span_and_new_traces_differ():
    spans = {tracing.continue_trace(VALID)[1] for _ in range(1000)}
    traces = {tracing.continue_trace(None)[0] for _ in range(1000)}
    assert len(spans) == 1000 and len(traces) == 1000


@pytest.mark.parametrize(("header", "expected"), [
    ("congo=t61rcWkgMzE", "congo=t61rcWkgMzE"),
    ("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    (" rojo=1 ,\t, congo=2 ", "rojo=1,congo=2"),        # whitespace and empty members
    ("fw529a3039@dt=Z1", "fw529a3039@dt=Z1"),           # multi-tenant key
    (None, None),
    ("", None),
    ("nokey", None),
    ("UPPER=1", None),                                  # keys are lower case
    ("a=1,a=2", None),                                  # duplicate key
    ("a=bad,value", None),
    ("a=1\r\nX-Injected: yes", None),                   # never a header of its own
    ("a=" + "x" * 600, None),                           # over 512 characters
    (",".join(f"k{i}=v" for i in range(33)), None),     # over 32 members
])
def test_tracestate_is_kept_only_when_well_formed(header, expected):
    assert tracing.clean_tracestate(header) == expected


def test_made_up_ids_are_lower_case_hex_of_the_right_length():
    assert re.fullmatch(r"[0-9a-f]{32}", ids.new_request_id())
    assert all(re.fullmatch(r"[0-9a-f]{32}", ids.new_trace_ids()[0]) for _ in range(100))
    assert all(re.fullmatch(r"[0-9a-f]{16}", ids.new_trace_ids()[1]) for _ in range(100))
    assert re.fullmatch(r"[0-9a-f]{16}", ids.new_span_id())


def test_a_forked_child_does_not_repeat_its_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave at once
        os.write(write, ids.new_trace_ids()[0].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != ids.new_trace_ids()[0]


def test_seeding_the_global_generator_does_not_make_ids_repeat():
    import random

    random.seed(1)
    first = ids.new_trace_ids()[0]
    random.seed(1)
    assert ids.new_trace_ids()[0] != first
