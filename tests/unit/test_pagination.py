"""Keyset cursors: what we issue decodes back; anything forged is a 422 on ``cursor``."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.errors import ValidationFailed
from app.pagination import UUIDText, decode_cursor, encode_cursor, page

ID = "0b5e8f0e-2c1a-4d3b-9f6e-1a2b3c4d5e6f"
WHEN = tuple[datetime, UUIDText]
PRICE = tuple[Decimal, UUIDText]


def forged(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_cursor_is_url_safe_base64_without_padding():
    cursor = encode_cursor("?>?>?>", ID)  # bytes that base64 spells with + and /
    assert not set(cursor) & set("+/=")
    assert decode_cursor(cursor, tuple[str, UUIDText]) == ("?>?>?>", ID)


def test_a_datetime_cursor_round_trips_in_utc():
    created = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    assert decode_cursor(encode_cursor(created.isoformat(), ID), WHEN) == (created, ID)


def test_an_offset_datetime_is_moved_to_utc():
    local = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    decoded, _ = decode_cursor(encode_cursor(local.isoformat(), ID), WHEN)
    assert decoded.tzinfo == timezone.utc and decoded.hour == 12


def test_a_price_cursor_round_trips():
    assert decode_cursor(encode_cursor("1200.00", ID), PRICE) == (Decimal("1200.00"), ID)


@pytest.mark.parametrize(("cursor", "shape"), [
    pytest.param("!!!not base64!!!", WHEN, id="not-base64"),
    pytest.param("é", WHEN, id="non-ascii"),
    pytest.param(forged(b"not json"), WHEN, id="not-json"),
    pytest.param(forged(b'{"a": 1}'), WHEN, id="wrong-shape"),
    pytest.param(encode_cursor("2026-03-01T12:00:00Z"), WHEN, id="too-short"),
    pytest.param(encode_cursor("2026-03-01T12:00:00Z", ID, 1), WHEN, id="too-long"),
    pytest.param(encode_cursor("2026-03-01T12:00:00Z", "not-a-uuid"), WHEN, id="bad-id"),
    pytest.param(encode_cursor("2026-03-01T12:00:00Z", ID.upper()), WHEN, id="upper-id"),
    pytest.param(encode_cursor("2026-03-01T12:00:00", ID), WHEN, id="naive-datetime"),
    pytest.param(encode_cursor("0001-01-01T00:00:00+01:00", ID), WHEN, id="before-year-1"),
    pytest.param(encode_cursor("9999-12-31T23:59:59-01:00", ID), WHEN, id="after-year-9999"),
    pytest.param(encode_cursor("NaN", ID), PRICE, id="nan-price"),
    pytest.param(encode_cursor("Infinity", ID), PRICE, id="infinite-price"),
    pytest.param(encode_cursor("1e30", ID), PRICE, id="huge-price"),
    pytest.param(encode_cursor("a\x00b", ID), tuple[str, UUIDText], id="nul-text"),
    pytest.param(encode_cursor(["a\x00b"], ID), tuple[list[str], UUIDText], id="nested-nul"),
])
def test_a_forged_cursor_is_a_422_on_the_cursor_field(cursor, shape):
    with pytest.raises(ValidationFailed) as info:
        decode_cursor(cursor, shape)
    assert info.value.status == "422 Unprocessable Entity"
    assert info.value.code == "validation_failed"
    assert info.value.details == [{"field": "$.cursor", "message": "invalid cursor"}]


def test_a_short_page_has_no_next_cursor():
    rows = [(1, "a"), (2, "b")]
    assert page(rows, 2, key=lambda row: row) == (rows, None)
    assert page([], 20, key=lambda row: row) == ([], None)


def test_one_row_past_the_limit_gives_a_cursor_at_the_last_row_shown():
    rows = [("2026-03-03T00:00:00+00:00", "c"), ("2026-03-02T00:00:00+00:00", "b"),
            ("2026-03-01T00:00:00+00:00", "a")]
    shown, cursor = page(rows, 2, key=lambda row: row)
    assert shown == rows[:2]
    assert decode_cursor(cursor, tuple[datetime, str]) == (
        datetime(2026, 3, 2, tzinfo=timezone.utc), "b")
