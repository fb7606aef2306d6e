"""Catalog fixtures through the API."""

import itertools

_skus = itertools.count()


def create_category(client, admin, slug="tools", name="Tools"):
    result = client.simulate_post("/v1/categories", json={"name": name, "slug": slug},
                                  headers=admin["headers"])
    assert result.status_code == 201, result.text
    return result.json


def create_product(client, admin, **fields):
    body = {"sku": f"T-{next(_skus)}", "name": "Test Hammer", "price": "10.00", "stock": 10,
            **fields}
    result = client.simulate_post("/v1/products", json=body, headers=admin["headers"])
    assert result.status_code == 201, result.text
    return result.json


def price(client, product_id):
    result = client.simulate_get(f"/v1/products/{product_id}")
    assert result.status_code == 200, result.text
    return result.json["price"]


def listed_prices(client, query):
    result = client.simulate_get("/v1/products", query_string=query)
    assert result.status_code == 200, result.text
    return {p["id"]: p["price"] for p in result.json["items"]}


def patch_price(client, admin, product_id, new_price):
    result = client.simulate_patch(f"/v1/products/{product_id}", json={"price": new_price},
                                   headers=admin["headers"])
    assert result.status_code == 200, result.text
