"""JSON has one number type: 37.0 is the integer 37, as the OpenAPI schema's `integer` says."""

import pytest

from tests.support.api import new_user
from tests.support.catalog import create_product

ADDRESS = {"line1": "1 Main St", "city": "X", "postal_code": "1", "country": "US"}


def test_whole_number_floats_are_integers(client, db):
    admin, buyer = new_user(client, "admin", db), new_user(client)
    product = create_product(client, admin, stock=10.0)
    assert product["stock"] == 10
    placed = client.simulate_post("/v1/orders", headers=buyer["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 3.0}], "shipping_address": ADDRESS})
    assert placed.status_code == 201 and placed.json["items"][0]["quantity"] == 3


@pytest.mark.parametrize("quantity", [2.5, "3", 1e300, True, 0.0, 101.0])
def test_other_numbers_stay_errors(client, db, quantity):
    admin, buyer = new_user(client, "admin", db), new_user(client)
    product = create_product(client, admin)
    result = client.simulate_post("/v1/orders", headers=buyer["headers"], json={
        "items": [{"product_id": product["id"], "quantity": quantity}],
        "shipping_address": ADDRESS})
    assert result.status_code == 422, result.text
    assert result.json["error"]["details"][0]["field"] == "$.items[0].quantity"
