"""The admin webhook API: subscriptions, secrets, deliveries and manual retries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import falcon.testing
import pytest

from app.config import Config
from app.factory import create_app
from app.queries import events as outbox
from tests.support.api import new_user

URL = "https://hooks.example.test/in"


@pytest.fixture
def webhook_db(db):
    with db.cursor() as cur:
        cur.execute("TRUNCATE events, webhook_subscriptions, webhook_deliveries CASCADE")
    return db


@pytest.fixture
def make_client(base_env, webhook_db, cache_flushed):
    apps = []

    def make(**env) -> falcon.testing.TestClient:
        application = create_app(Config.from_env({**base_env, **env}), configure_logging=False)
        apps.append(application)
        return falcon.testing.TestClient(application)

    yield make
    for application in apps:
        application.deps.close()


@pytest.fixture
def api(make_client):
    return make_client()


@pytest.fixture
def admin(api, webhook_db):
    return new_user(api, "admin", webhook_db)["headers"]


def register(api, admin, url=URL, events=("order.placed",), **extra):
    return api.simulate_post("/v1/webhooks", headers=admin,
                             json={"url": url, "events": list(events), **extra})


def test_a_subscription_shows_its_secret_once(api, admin):
    created = register(api, admin, events=["order.placed", "product.updated", "order.placed"],
                       description="ERP")
    assert created.status_code == 201, created.text
    body = created.json
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["events"] == ["order.placed", "product.updated"]  # duplicates dropped
    assert body["enabled"] is True and body["description"] == "ERP"
    assert created.headers["Location"] == f"/v1/webhooks/{body['id']}"

    fetched = api.simulate_get(f"/v1/webhooks/{body['id']}", headers=admin)
    assert fetched.status_code == 200
    assert "secret" not in fetched.json and "secret" not in fetched.text
    assert fetched.json["stats"] == {"pending": 0, "delivering": 0, "failed": 0,
                                     "succeeded": 0, "dead": 0}
    listed = api.simulate_get("/v1/webhooks", headers=admin)
    assert [item["id"] for item in listed.json["items"]] == [body["id"]]
    assert "whsec_" not in listed.text


def test_the_list_is_paginated(api, admin):
    ids = [register(api, admin).json["id"] for _ in range(3)]
    first = api.simulate_get("/v1/webhooks", params={"limit": 2}, headers=admin).json
    second = api.simulate_get("/v1/webhooks", headers=admin,
                              params={"limit": 2, "cursor": first["next_cursor"]}).json
    assert second["next_cursor"] is None
    assert [i["id"] for i in first["items"] + second["items"]] == ids[::-1]


@pytest.mark.parametrize("url", [
    "http://hooks.example.test/in",  # http without the operator's consent
    "http://127.0.0.1:9000/in",
    "https://127.0.0.1/in",
    "https://localhost/in",
    "https://10.1.2.3/in",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/in",
    "https://[::ffff:127.0.0.1]/in",
    "https://0x7f000001/in",
    "https://user:pass@hooks.example.test/in",
    "ftp://hooks.example.test/in",
    "https:///in",
])
def test_unsafe_urls_are_refused_by_default(api, admin, url):
    result = register(api, admin, url=url)
    assert result.status_code == 422, result.text
    assert result.json["error"]["details"][0]["field"] == "$.url"


def test_http_to_loopback_needs_both_operator_settings(make_client, webhook_db):
    http_only = make_client(PEREGRINE_WEBHOOK_ALLOW_HTTP="1")
    admin = new_user(http_only, "admin", webhook_db)["headers"]
    assert register(http_only, admin, url="http://hooks.example.test/in").status_code == 201
    assert register(http_only, admin, url="http://127.0.0.1:9000/in").status_code == 422
    both = make_client(PEREGRINE_WEBHOOK_ALLOW_HTTP="1", PEREGRINE_WEBHOOK_ALLOW_PRIVATE="1")
    assert register(both, admin, url="http://127.0.0.1:9000/in").status_code == 201


@pytest.mark.parametrize("body", [
    {"url": URL, "events": []},
    {"url": URL, "events": ["order.shipped"]},
    {"url": URL},
    {"events": ["order.placed"]},
    {"url": URL, "events": ["order.placed"], "secret": "whsec_mine"},
    {"url": "", "events": ["order.placed"]},
])
def test_malformed_registrations_are_422(api, admin, body):
    assert api.simulate_post("/v1/webhooks", headers=admin, json=body).status_code == 422


def test_patch_changes_url_events_and_enabled(api, admin):
    webhook_id = register(api, admin).json["id"]
    path = f"/v1/webhooks/{webhook_id}"
    patched = api.simulate_patch(path, headers=admin, json={
        "url": "https://other.example.test/x", "events": ["order.cancelled"], "enabled": False})
    assert patched.status_code == 200, patched.text
    assert (patched.json["url"], patched.json["events"], patched.json["enabled"]) == (
        "https://other.example.test/x", ["order.cancelled"], False)
    assert api.simulate_patch(path, headers=admin,
                              json={"url": "https://127.0.0.1/"}).status_code == 422
    assert api.simulate_patch(path, headers=admin, json={"secret": "x"}).status_code == 422
    assert api.simulate_get(path, headers=admin).json["url"] == "https://other.example.test/x"


def test_re_enabling_clears_the_disabled_reason(api, admin, webhook_db):
    webhook_id = register(api, admin).json["id"]
    with webhook_db.cursor() as cur:
        cur.execute("UPDATE webhook_subscriptions SET enabled = false,"
                    " disabled_reason = 'the endpoint answered 410 Gone' WHERE id = %s",
                    (webhook_id,))
    path = f"/v1/webhooks/{webhook_id}"
    assert api.simulate_get(path, headers=admin).json["disabled_reason"].endswith("410 Gone")
    enabled = api.simulate_patch(path, headers=admin, json={"enabled": True}).json
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None


def test_delete_removes_the_subscription_and_its_deliveries(api, admin, webhook_db):
    webhook_id = register(api, admin).json["id"]
    with webhook_db.cursor() as cur:
        outbox.record(cur, "order.placed", "00000000-0000-4000-8000-000000000001", "{}")
    path = f"/v1/webhooks/{webhook_id}"
    assert api.simulate_delete(path, headers=admin).status_code == 204
    assert api.simulate_get(path, headers=admin).status_code == 404
    assert api.simulate_delete(path, headers=admin).status_code == 404
    with webhook_db.cursor() as cur:
        cur.execute("SELECT count(*) FROM webhook_deliveries")
        assert cur.fetchone()[0] == 0


def test_rotation_keeps_the_previous_secret_for_a_day(api, admin, webhook_db):
    created = register(api, admin).json
    rotated = api.simulate_post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json["secret"].startswith("whsec_")
    assert rotated.json["secret"] != created["secret"]
    expires = datetime.fromisoformat(rotated.json["previous_expires_at"])
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(hours=24))) < timedelta(minutes=1)
    with webhook_db.cursor() as cur:
        cur.execute("SELECT secret, previous_secret FROM webhook_subscriptions WHERE id = %s",
                    (created["id"],))
        assert cur.fetchone() == (rotated.json["secret"], created["secret"])
    unknown = "/v1/webhooks/00000000-0000-4000-8000-000000000000/rotate-secret"
    assert api.simulate_post(unknown, headers=admin).status_code == 404


def _delivery(webhook_db, webhook_id, status):
    with webhook_db.cursor() as cur:
        event_id = outbox.record(cur, "order.placed", "00000000-0000-4000-8000-000000000001",
                                 json.dumps({"n": 1}))
        cur.execute("UPDATE webhook_deliveries SET status = %s, attempts = 3, last_status = 500,"
                    " last_error = 'boom', retry_from = now() - interval '2 days'"
                    " WHERE event_id = %s AND subscription_id = %s RETURNING id::text",
                    (status, event_id, webhook_id))
        return event_id, cur.fetchone()[0]


def test_deliveries_are_listed_and_a_dead_one_can_be_retried(api, admin, webhook_db):
    webhook_id = register(api, admin).json["id"]
    event_id, delivery_id = _delivery(webhook_db, webhook_id, "dead")
    listed = api.simulate_get(f"/v1/webhooks/{webhook_id}/deliveries", headers=admin)
    assert listed.status_code == 200
    [item] = listed.json["items"]
    assert item["id"] == delivery_id and item["event_id"] == event_id
    assert (item["event_type"], item["status"], item["attempts"], item["last_status"],
            item["last_error"], item["next_attempt_at"]) == (
        "order.placed", "dead", 3, 500, "boom", None)
    assert api.simulate_get(f"/v1/webhooks/{webhook_id}", headers=admin).json["stats"]["dead"] == 1

    retry = f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"
    requeued = api.simulate_post(retry, headers=admin)
    assert requeued.status_code == 202, requeued.text
    assert requeued.json["status"] == "pending" and requeued.json["next_attempt_at"]
    with webhook_db.cursor() as cur:  # a fresh retry period, due now
        cur.execute("SELECT retry_from > now() - interval '1 minute', next_attempt_at <= now()"
                    " FROM webhook_deliveries WHERE id = %s", (delivery_id,))
        assert cur.fetchone() == (True, True)
    again = api.simulate_post(retry, headers=admin)
    assert again.status_code == 409  # pending already
    filtered = api.simulate_get(f"/v1/webhooks/{webhook_id}/deliveries", headers=admin,
                                params={"status": "dead"})
    assert filtered.json["items"] == []


def test_retry_refuses_unknown_or_foreign_deliveries(api, admin, webhook_db):
    mine = register(api, admin).json["id"]
    other = register(api, admin).json["id"]
    _, delivery_id = _delivery(webhook_db, mine, "failed")
    assert api.simulate_post(f"/v1/webhooks/{other}/deliveries/{delivery_id}/retry",
                             headers=admin).status_code == 404
    assert api.simulate_post(f"/v1/webhooks/{mine}/deliveries/not-a-uuid/retry",
                             headers=admin).status_code == 404
    assert api.simulate_post(f"/v1/webhooks/{mine}/deliveries/{delivery_id}/retry",
                             headers=admin).status_code == 202


def test_users_cannot_see_webhooks(api, admin):
    user = new_user(api)["headers"]
    assert api.simulate_get("/v1/webhooks", headers=user).status_code == 403
    assert register(api, user).status_code == 403


def test_the_openapi_document_describes_the_webhook_api(api):
    paths = api.simulate_get("/openapi.json").json["paths"]
    assert set(paths["/v1/webhooks"]) >= {"get", "post"}
    assert set(paths["/v1/webhooks/{webhook_id}"]) >= {"get", "patch", "delete"}
    retry = paths["/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"]["post"]
    assert "202" in retry["responses"]
