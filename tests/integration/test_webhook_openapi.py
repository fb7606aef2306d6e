"""The ``webhooks`` object of /openapi.json describes the deliveries as they are sent."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import jsonschema
import pytest
from openapi_spec_validator import validate

from app.queries import events as outbox
from app.queries import webhooks as webhook_queries
from app.webhooks import signing, worker
from tests.support.api import new_user
from tests.support.catalog import create_product

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
STANDARD_WEBHOOKS_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"]


@pytest.fixture
def document(client):
    served = client.simulate_get("/openapi.json")
    assert served.status_code == 200
    return served.json


@pytest.fixture
def webhook_db(db):
    with db.cursor() as cur:
        cur.execute("TRUNCATE events, webhook_subscriptions, webhook_deliveries CASCADE")
    return db


def body_schema(document, event_type: str) -> dict:
    """The event's request body schema, resolvable against the whole document."""
    schema = document["webhooks"][event_type]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    return {**document, **schema}  # $refs point into the document's components


def claimed_bodies(db) -> dict[str, list[tuple[bytes, dict]]]:
    """What the worker would send for every pending delivery: (body, headers) by type."""
    with db.cursor() as cur:
        jobs = webhook_queries.claim(cur, 100, timedelta(seconds=30))
    sent: dict[str, list[tuple[bytes, dict]]] = {}
    for job in jobs:
        body = worker.event_body(job)
        sent.setdefault(job.event_type, []).append(
            (body, signing.headers(job.secrets, job.event_id, body)))
    return sent


def test_the_document_with_its_webhooks_is_valid_openapi_3_1(document):
    validate(document)


def test_every_event_type_is_a_webhook_with_the_standard_webhooks_headers(document):
    assert set(document["webhooks"]) == set(outbox.TYPES)
    for item in document["webhooks"].values():
        post = item["post"]
        assert [p["name"] for p in post["parameters"]] == STANDARD_WEBHOOKS_HEADERS
        assert all(p["in"] == "header" and p["required"] for p in post["parameters"])
        assert {"2XX", "410", "default"} <= set(post["responses"])


def test_the_bodies_and_headers_sent_match_the_document(client, admin, webhook_db, document):
    with webhook_db.cursor() as cur:
        webhook_queries.insert_subscription(cur, "https://hooks.example.test/in",
                                            list(outbox.TYPES), None, signing.new_secret())
    product = create_product(client, admin, stock=5)
    changed = client.simulate_patch(f"/v1/products/{product['id']}", json={"stock": 6},
                                    headers=admin["headers"])
    assert changed.status_code == 200, changed.text
    user = new_user(client)
    order = client.simulate_post("/v1/orders", headers=user["headers"], json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
    assert order.status_code == 201, order.text
    cancelled = client.simulate_post(f"/v1/orders/{order.json['id']}/cancel",
                                     headers=user["headers"])
    assert cancelled.status_code == 200, cancelled.text
    deleted = client.simulate_delete(f"/v1/products/{product['id']}", headers=admin["headers"])
    assert deleted.status_code == 204, deleted.text

    sent = claimed_bodies(webhook_db)
    assert sorted(len(sent[t]) for t in outbox.TYPES) == [1, 1, 3]  # create, change, delete
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for event_type, attempts in sent.items():
        schema = body_schema(document, event_type)
        parameters = document["webhooks"][event_type]["post"]["parameters"]
        for body, headers in attempts:
            jsonschema.validate(json.loads(body), schema, format_checker=checker)
            for parameter in parameters:
                pattern = parameter["schema"].get("pattern")
                if pattern:
                    assert re.fullmatch(pattern, headers[parameter["name"]])


def test_a_body_of_another_shape_is_refused_by_the_document(document):
    schema = body_schema(document, "order.placed")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "x", "type": "order.placed", "created_at": "now",
                             "data": {"id": "x"}}, schema)
