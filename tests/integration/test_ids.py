"""Ids in upper or mixed case are the same id everywhere a path takes one."""

from tests.support.api import new_user
from tests.support.catalog import create_product

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


def test_product_paths_accept_any_case_and_answer_canonical_ids(client, db):
    admin = new_user(client, "admin", db)
    product = create_product(client, admin)
    canonical = client.simulate_get(f"/v1/products/{product['id']}")
    shouted = client.simulate_get(f"/v1/products/{product['id'].upper()}")
    assert shouted.status_code == 200 and shouted.json["id"] == product["id"]
    assert shouted.headers["ETag"] == canonical.headers["ETag"]
    patched = client.simulate_patch(f"/v1/products/{product['id'].upper()}",
                                    json={"price": "12.00"}, headers=admin["headers"])
    assert patched.status_code == 200
    # One cache entry: the canonical spelling sees the write at once.
    assert client.simulate_get(f"/v1/products/{product['id']}").json["price"] == "12.00"
    assert client.simulate_delete(f"/v1/products/{product['id'].upper()}",
                                  headers=admin["headers"]).status_code == 204
    assert client.simulate_get(f"/v1/products/{product['id']}").status_code == 404


def test_order_paths_accept_any_case(client, db):
    admin, buyer = new_user(client, "admin", db), new_user(client)
    product = create_product(client, admin)
    placed = client.simulate_post("/v1/orders", headers=buyer["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
    assert placed.status_code == 201
    order_id = placed.json["id"]
    got = client.simulate_get(f"/v1/orders/{order_id.upper()}", headers=buyer["headers"])
    assert got.status_code == 200 and got.json["id"] == order_id
    cancelled = client.simulate_post(f"/v1/orders/{order_id.upper()}/cancel",
                                     headers=buyer["headers"])
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"


def test_ids_in_bodies_and_queries_accept_any_case(client, db):
    admin, buyer = new_user(client, "admin", db), new_user(client)
    product = create_product(client, admin)
    placed = client.simulate_post("/v1/orders", headers=buyer["headers"], json={
        "items": [{"product_id": product["id"].upper(), "quantity": 1}],
        "shipping_address": ADDRESS})
    assert placed.status_code == 201 and placed.json["items"][0]["product_id"] == product["id"]
    # Two spellings of one product are one product: a duplicate line.
    duplicate = client.simulate_post("/v1/orders", headers=buyer["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1},
                  {"product_id": product["id"].upper(), "quantity": 1}],
        "shipping_address": ADDRESS})
    assert duplicate.status_code == 422
    mine = client.simulate_get("/v1/orders", query_string=f"user_id={buyer['id'].upper()}",
                               headers=admin["headers"])
    assert mine.status_code == 200 and [o["id"] for o in mine.json["items"]] == [placed.json["id"]]
