"""msgspec's validation errors as the contract's ``details``: ``[{"field", "message"}]``.

The field is msgspec's path; the message is in words (app/schemas/messages.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from app.errors import validation_details
from app.schemas.text import Text


class Item(msgspec.Struct, forbid_unknown_fields=True):
    product_id: str
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]


class Address(msgspec.Struct, forbid_unknown_fields=True):
    city: Text(min_length=1, max_length=10)


class Order(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Item]
    address: Address


VALID = {"items": [{"product_id": "p", "quantity": 1}], "address": {"city": "Oslo"}}


def details_for(document) -> list[dict]:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(msgspec.json.encode(document), type=Order)
    return validation_details(info.value)


def test_the_contracts_example_path_and_message():
    document = {**VALID, "items": [{"product_id": "p", "quantity": 0}]}
    assert details_for(document) == [
        {"field": "$.items[0].quantity", "message": "must be at least 1"}]


def test_a_later_list_element_is_named_by_its_index():
    items = [{"product_id": "p", "quantity": 1}, {"product_id": "p", "quantity": 101}]
    assert details_for({**VALID, "items": items})[0]["field"] == "$.items[1].quantity"


def test_an_unknown_field_is_named_in_the_path():
    assert details_for({**VALID, "coupon": "FREE"}) == [
        {"field": "$.coupon", "message": "is not a field of this object"}]
    nested = {**VALID, "address": {"city": "Oslo", "zip": "1"}}
    assert details_for(nested)[0]["field"] == "$.address.zip"


def test_a_missing_required_field_is_named_in_the_path():
    assert details_for({"items": []}) == [
        {"field": "$.address", "message": "is required"}]
    assert details_for({**VALID, "items": [{"quantity": 1}]})[0]["field"] == (
        "$.items[0].product_id")


def test_a_wrong_top_level_type_is_the_whole_document():
    assert details_for([1, 2]) == [{"field": "$", "message": "must be an object, not an array"}]


def test_a_wrong_type_deep_inside_is_named_in_words():
    detail = details_for({**VALID, "address": {"city": 7}})[0]
    assert detail == {"field": "$.address.city", "message": "must be a string, not a whole number"}


def test_string_bounds_are_reported_on_their_field():
    detail = details_for({**VALID, "address": {"city": "x" * 11}})[0]
    assert detail["field"] == "$.address.city"
    assert detail["message"] == "must be at most 10 characters"


def test_a_nul_fails_the_nul_free_pattern_on_its_field():
    detail = details_for({**VALID, "address": {"city": "Os\x00lo"}})[0]
    assert detail["field"] == "$.address.city"
    assert detail["message"] == "must not contain NUL (\\u0000) characters"
