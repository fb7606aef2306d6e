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
