"""Validation details say in words what a value must be, never msgspec's notation or a regex."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from app.errors import InvalidInput, validation_details
from app.operations import operation_of, responders
from app.routes import ROUTES
from app.schemas.accounts import RegisterIn, UpdateUserIn
from app.schemas.catalog import ProductIn, ProductQuery
from app.schemas.messages import UNDESCRIBED_PATTERN, in_words
from app.schemas.orders import OrderIn
from app.schemas.text import PATTERN_WORDS, anchored

UUID = "0b7f3c9e-5d2a-4f61-9c1e-2a8d6b4e7f10"
ADDRESS = {"line1": "1 Main St", "city": "Oslo", "postal_code": "0150", "country": "NO"}
ORDER = {"items": [{"product_id": UUID, "quantity": 1}], "shipping_address": ADDRESS}
REGISTER = {"email": "ada@example.com", "password": "x" * 8, "name": "Ada"}
PRODUCT = {"sku": "HAM-1", "name": "Hammer", "price": "1.00"}


def detail(schema: type, document: dict, *, strict: bool = True) -> dict:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(document, schema, strict=strict)
    (only,) = validation_details(InvalidInput(str(info.value), schema))
    return only


@pytest.mark.parametrize(("schema", "document", "field", "message"), [
    (RegisterIn, {**REGISTER, "email": "ada"}, "$.email", "must be a valid email address"),
    (OrderIn, {**ORDER, "items": [{"product_id": "p-1", "quantity": 1}]},
     "$.items[0].product_id", "must be a UUID"),
    (RegisterIn, {**REGISTER, "name": "x" * 101}, "$.name", "must be at most 100 characters"),
    (RegisterIn, {**REGISTER, "password": "short"}, "$.password",
     "must be at least 8 characters"),
    (UpdateUserIn, {"role": "root"}, "$.role", 'must be one of "admin", "user"'),
    (OrderIn, {**ORDER, "items": [{"product_id": UUID, "quantity": 1.5}]},
     "$.items[0].quantity", "must be a whole number, not a fractional number"),
    (OrderIn, {**ORDER, "items": [{"product_id": UUID, "quantity": 101}]},
     "$.items[0].quantity", "must be at most 100"),
    (OrderIn, {**ORDER, "items": []}, "$.items", "must have at least 1 item"),
    (OrderIn, {**ORDER, "shipping_address": {**ADDRESS, "country": "no"}},
     "$.shipping_address.country", "must be an ISO 3166-1 alpha-2 code: 2 upper-case letters"),
    (ProductIn, {**PRODUCT, "price": "1.005"}, "$.price",
     'must be a decimal string of up to 10 digits and 2 places, e.g. "1200.00"'),
    (ProductIn, {**PRODUCT, "category": 7}, "$.category",
     "must be a string or null, not a whole number"),
    (ProductIn, {**PRODUCT, "name": "Ham\x00mer"}, "$.name",
     "must not contain NUL (\\u0000) characters"),
    (ProductIn, {**PRODUCT, "colour": "red"}, "$.colour", "is not a field of this object"),
    (ProductIn, {"sku": "HAM-1", "name": "Hammer"}, "$.price", "is required"),
])
def test_each_rule_is_reported_in_words_on_its_field(schema, document, field, message):
    assert detail(schema, document) == {"field": field, "message": message}


def test_a_query_enum_names_its_allowed_values():
    found = detail(ProductQuery, {"sort": "cheapest"}, strict=False)
    assert found["field"] == "$.sort"
    assert found["message"].startswith("must be one of ")
    for value in ("name", "-name", "price", "-price", "created_at", "-created_at"):
        assert f'"{value}"' in found["message"]


def test_an_enum_without_its_schema_still_reads_as_words():
    assert in_words("Invalid enum value 'root'") == "is not one of the allowed values"


def test_a_pattern_without_words_never_shows_its_regex():
    pattern = anchored("[a-z]+")  # declared with anchored(), not worded()
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert("A", Annotated[str, msgspec.Meta(pattern=pattern)])
    (found,) = validation_details(info.value)
    assert found == {"field": "$", "message": UNDESCRIBED_PATTERN}
    assert "regex" not in found["message"]


def test_a_message_of_no_known_shape_is_kept():
    assert in_words("the order needs a shipping address") == "the order needs a shipping address"


def _input_patterns():
    """Every pattern in the schemas of request bodies and query strings."""
    types = []
    for route in ROUTES:
        for method in responders(route.resource):
            op = operation_of(route.resource, method)
            types += [t for t in (op.body, op.query) if t is not None]
    _, components = msgspec.json.schema_components(types)
    found, todo = set(), [components]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            todo += node.values()
        elif isinstance(node, list):
            todo += node
    return found


def test_every_input_pattern_is_declared_with_its_words():
    patterns = _input_patterns()
    assert len(patterns) >= 7  # NUL-free text, UUIDs, email, slug, money, currency, ...
    assert patterns <= set(PATTERN_WORDS), patterns - set(PATTERN_WORDS)


def test_the_words_complete_a_sentence_about_a_field():
    for words in PATTERN_WORDS.values():
        assert words.startswith(("must ", "is ")), words
