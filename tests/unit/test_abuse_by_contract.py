"""Which schemathesis "valid data rejected" findings are the contract's own rules."""
import json

from tests.abuse.by_contract import by_contract


def envelope(message: str, field: str, detail: str) -> bytes:
    return json.dumps({"error": {"code": "validation_failed", "message": message,
                                 "details": [{"field": field, "message": detail}]}}).encode()


def test_mixed_currencies_in_one_order_is_a_contract_rule():
    body = envelope("all products in an order must share one currency", "$.items",
                    "mixed currencies")
    assert by_contract("positive_data_acceptance", 422, body)


def test_other_item_rejections_still_count_as_findings():
    body = envelope("the order is invalid", "$.items", "something else")
    assert not by_contract("positive_data_acceptance", 422, body)
    mixed = envelope("all products in an order must share one currency", "$.items",
                     "mixed currencies")
    assert not by_contract("not_a_server_error", 422, mixed)
    assert not by_contract("positive_data_acceptance", 500, mixed)


def test_an_order_total_beyond_what_an_order_holds_is_a_contract_rule():
    body = envelope("the order total would exceed 999999999999.99, the most one order can hold",
                    "$.items", "total too large")
    assert by_contract("positive_data_acceptance", 422, body)
