"""The delivery worker: real ``python -m app deliver`` processes, real Postgres, a local sink.

Signatures are checked with the independent ``standardwebhooks`` package.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
import uuid
from datetime import timedelta

import psycopg2
import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from app.queries import events as outbox
from app.queries import webhooks as webhook_queries
from app.webhooks import signing
from tests.support.waiting import wait_until
from tests.support.webhooks import FAST, DeliveryWorker, Sink


@pytest.fixture
def webhook_db(db):
    with db.cursor() as cur:
        cur.execute("TRUNCATE events, webhook_subscriptions, webhook_deliveries CASCADE")
    return db


@pytest.fixture
def sink():
    endpoint = Sink()
    yield endpoint
    endpoint.close()


@pytest.fixture
def start_worker(base_env, webhook_db, tmp_path):
    started: list[DeliveryWorker] = []

    def start(**env) -> DeliveryWorker:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = DeliveryWorker({**base_env, **FAST, **env}, log_path)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def subscribe(db, url: str, events=outbox.TYPES) -> tuple[str, str]:
    secret = signing.new_secret()
    with db.cursor() as cur:
        created = webhook_queries.insert_subscription(cur, url, list(events), None, secret)
    return created.id, secret


def emit(db, count: int = 1, event_type: str = outbox.ORDER_PLACED) -> list[str]:
    """Commit ``count`` events, each in its own transaction, as the request path does."""
    ids = []
    for index in range(count):
        with db.cursor() as cur:
            aggregate = str(uuid.uuid4())
            ids.append(outbox.record(cur, event_type, aggregate,
                                     json.dumps({"id": aggregate, "n": index})))
    return ids


def deliveries(db, event_id: str) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute("SELECT status, attempts, last_status, last_error FROM webhook_deliveries"
                    " WHERE event_id = %s", (event_id,))
        return cur.fetchall()


def status_of(db, event_id: str) -> str | None:
    rows = deliveries(db, event_id)
    return rows[0][0] if rows else None


def test_a_failed_attempt_is_retried_with_the_same_id_and_valid_signatures(
        webhook_db, sink, start_worker):
    sink.answers = [(500, {})]
    _, secret = subscribe(webhook_db, sink.url)
    start_worker()
    [event_id] = emit(webhook_db)

    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)
    first, second = sink.received
    assert first.webhook_id == second.webhook_id == event_id
    for attempt in (first, second):
        payload = attempt.verify(secret)  # raises unless the signature is valid
        assert payload["id"] == event_id and payload["type"] == "order.placed"
        assert set(payload) == {"id", "type", "created_at", "data"}
    assert first.body == second.body
    assert deliveries(webhook_db, event_id) == [("succeeded", 2, 200, None)]


def test_after_a_rotation_both_secrets_verify(webhook_db, sink, start_worker):
    subscription_id, old_secret = subscribe(webhook_db, sink.url)
    new_secret = signing.new_secret()
    with webhook_db.cursor() as cur:
        webhook_queries.rotate_secret(cur, subscription_id, new_secret, timedelta(hours=24))
    start_worker()
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)
    [attempt] = sink.received
    assert attempt.verify(old_secret)["id"] == event_id
    assert attempt.verify(new_secret)["id"] == event_id
    with pytest.raises(WebhookVerificationError):
        attempt.verify(signing.new_secret())


def test_a_worker_killed_between_delivery_and_marking_causes_a_redelivery(
        webhook_db, sink, start_worker):
    sink.hold = threading.Event()  # the endpoint has the event, the worker waits for the answer
    _, secret = subscribe(webhook_db, sink.url)
    first_worker = start_worker()
    [event_id] = emit(webhook_db)
    assert sink.arrived.wait(10)
    first_worker.kill()  # SIGKILL: nothing is recorded
    sink.hold.set()
    sink.hold = None
    assert deliveries(webhook_db, event_id)[0][0] == "delivering"

    start_worker()
    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)
    assert sink.ids() == [event_id, event_id]
    for attempt in sink.received:
        attempt.verify(secret)
    assert deliveries(webhook_db, event_id)[0][:2] == ("succeeded", 2)


def test_two_workers_never_deliver_one_event_at_the_same_time(webhook_db, sink, start_worker):
    sink.delay = 0.02
    subscribe(webhook_db, sink.url)
    start_worker(PEREGRINE_WEBHOOK_CONCURRENCY="4")
    start_worker(PEREGRINE_WEBHOOK_CONCURRENCY="4")
    event_ids = emit(webhook_db, 120)

    def all_done():
        with webhook_db.cursor() as cur:
            cur.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
            return cur.fetchone()[0] == len(event_ids)

    wait_until(all_done, timeout=30)
    assert max(sink.max_in_flight.values()) == 1
    assert set(sink.ids()) == set(event_ids)
    # No attempt reached the endpoint twice: no claim was sent by both workers.
    # (An attempt may reach it not at all: one started too late in its lease
    # is left for the next claim.)
    with webhook_db.cursor() as cur:
        cur.execute("SELECT event_id::text, attempts FROM webhook_deliveries")
        attempts = dict(cur.fetchall())
    received = collections.Counter(sink.ids())
    assert all(received[event_id] <= attempts[event_id] for event_id in event_ids)


def test_with_the_notification_lost_a_delivery_happens_within_the_poll_interval(
        webhook_db, sink, start_worker):
    subscription_id, _ = subscribe(webhook_db, sink.url)
    start_worker(PEREGRINE_WEBHOOK_POLL_INTERVAL="1")
    time.sleep(0.3)  # past the worker's first claim: only the poll can find the row now
    with webhook_db.cursor() as cur:  # committed without NOTIFY, as when a notification is lost
        cur.execute("INSERT INTO events (type, aggregate_id, data) VALUES"
                    " ('order.placed', gen_random_uuid(), '{}') RETURNING id::text")
        event_id = cur.fetchone()[0]
        cur.execute("INSERT INTO webhook_deliveries (event_id, subscription_id) VALUES (%s, %s)",
                    (event_id, subscription_id))
    committed = time.monotonic()
    assert sink.arrived.wait(3)
    assert sink.received[0].at - committed < 1.0 + 1.0  # the poll interval, and some slack
    assert sink.ids() == [event_id]


def test_a_notification_wakes_the_worker_long_before_its_poll(webhook_db, sink, start_worker):
    subscribe(webhook_db, sink.url)
    start_worker(PEREGRINE_WEBHOOK_POLL_INTERVAL="60")
    time.sleep(0.3)
    committed = time.monotonic()
    [event_id] = emit(webhook_db)
    assert sink.arrived.wait(5)
    assert sink.received[0].at - committed < 2.0
    assert sink.ids() == [event_id]


def test_an_event_whose_notify_was_coalesced_away_is_delivered_within_a_window(
        webhook_db, sink, start_worker):
    subscribe(webhook_db, sink.url)
    # The sink holds every request, so no finished attempt wakes the worker:
    # only the claim a window after the NOTIFY can find the second event.
    sink.hold = threading.Event()
    start_worker(PEREGRINE_WEBHOOK_POLL_INTERVAL="60")
    time.sleep(0.5)  # past the claims that follow the start of listening
    listener = psycopg2.connect(webhook_db.dsn)
    listener.autocommit = True
    session = psycopg2.connect(webhook_db.dsn)  # one session, as one pooled connection
    try:
        with listener.cursor() as cur:
            cur.execute(f"LISTEN {outbox.CHANNEL}")
        with session.cursor() as cur:
            first = outbox.record(cur, outbox.ORDER_PLACED, str(uuid.uuid4()), "{}")
        session.commit()  # NOTIFYs: the worker wakes and claims the first event
        with session.cursor() as cur:  # inside the window: no NOTIFY of its own
            second = outbox.record(cur, outbox.ORDER_PLACED, str(uuid.uuid4()), "{}")
            assert sink.arrived.wait(2)  # committed only after the NOTIFY's claim
        session.commit()
        committed = time.monotonic()
        wait_until(lambda: len(sink.received) >= 2, timeout=5)
        assert sink.received[1].at - committed < 1.0  # the poll is 60 s
        listener.poll()
        assert len(listener.notifies) == 1  # the second commit really sent none
    finally:
        sink.hold.set()
        session.close()
        listener.close()
    assert sorted(sink.ids()) == sorted([first, second])


def test_410_kills_the_delivery_and_disables_the_subscription(webhook_db, sink, start_worker):
    sink.answers = [(410, {})]
    subscription_id, _ = subscribe(webhook_db, sink.url)
    start_worker()
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "dead", timeout=10)
    assert deliveries(webhook_db, event_id)[0][:3] == ("dead", 1, 410)
    with webhook_db.cursor() as cur:
        cur.execute("SELECT enabled, disabled_reason FROM webhook_subscriptions WHERE id = %s",
                    (subscription_id,))
        assert cur.fetchone() == (False, "the endpoint answered 410 Gone")
    [later] = emit(webhook_db)
    time.sleep(0.6)  # three poll intervals
    assert deliveries(webhook_db, later) == []  # a disabled subscription gets no new deliveries
    assert len(sink.received) == 1


def test_retry_after_is_honoured(webhook_db, sink, start_worker):
    sink.answers = [(503, {"Retry-After": "2"})]
    start_worker()
    subscribe(webhook_db, sink.url)
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)
    first, second = sink.received
    # Without Retry-After the backoff (at most 0.2 s here) would retry at once.
    assert second.at - first.at >= 1.9
    assert second.at - first.at < 6


def test_a_delivery_is_dead_once_its_retry_period_ran_out(webhook_db, sink, start_worker):
    sink.answers = [(500, {})] * 100
    start_worker(PEREGRINE_WEBHOOK_RETRY_FOR="1")
    subscribe(webhook_db, sink.url)
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "dead", timeout=10)
    status, attempts, last_status, last_error = deliveries(webhook_db, event_id)[0]
    assert attempts >= 2 and last_status == 500 and last_error == "ok"
    count = len(sink.received)
    time.sleep(0.5)
    assert len(sink.received) == count  # a dead delivery is not tried again


def test_private_targets_are_refused_at_delivery_time(webhook_db, sink, start_worker):
    # Registered when allowed (or re-pointed by DNS afterwards): the attempt checks again.
    subscribe(webhook_db, sink.url)
    start_worker(PEREGRINE_WEBHOOK_ALLOW_PRIVATE="0")
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "failed", timeout=10)
    error = deliveries(webhook_db, event_id)[0][3]
    assert error.startswith("target refused:") and "loopback" in error
    assert sink.received == []


def test_redirects_are_not_followed(webhook_db, sink, start_worker):
    sink.answers = [(302, {"Location": sink.url + "/elsewhere"})]
    start_worker()
    subscribe(webhook_db, sink.url)
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)
    # The 302 was a failure, retried at the subscribed URL; its Location was never asked.
    assert [r.path for r in sink.received] == ["/hooks", "/hooks"]


def test_a_stopped_worker_exits_cleanly(webhook_db, start_worker):
    worker = start_worker()
    assert worker.stop() == 0
    assert "webhook worker stopped" in worker.log()


def test_the_worker_reports_queue_gauges_and_outcomes_to_statsd(webhook_db, sink, start_worker):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    lines: list[str] = []

    def seen(prefix: str) -> list[str]:
        try:
            while True:
                lines.extend(receiver.recv(65536).decode().splitlines())
        except TimeoutError:
            pass
        return [line for line in lines if line.startswith(prefix)]

    # A paused subscription holds one waiting delivery and one dead letter: steady gauges.
    paused, _ = subscribe(webhook_db, sink.url)
    [waiting, dead] = emit(webhook_db, 2)
    with webhook_db.cursor() as cur:
        cur.execute("UPDATE webhook_subscriptions SET enabled = false WHERE id = %s", (paused,))
        cur.execute("UPDATE webhook_deliveries SET status = 'dead' WHERE event_id = %s", (dead,))
    subscribe(webhook_db, sink.url, ["product.updated"])
    sink.answers = [(500, {})]
    start_worker(PEREGRINE_STATSD_ADDR=f"127.0.0.1:{receiver.getsockname()[1]}")
    [event_id] = emit(webhook_db, event_type="product.updated")
    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)

    wait_until(lambda: seen("peregrine.webhooks.delivery.succeeded:1|c"), timeout=5)
    assert seen("peregrine.webhooks.delivery.failed:1|c")
    assert seen("peregrine.webhooks.delivery.ms:")
    wait_until(lambda: seen("peregrine.webhooks.dead_letters:1|g"), timeout=5)
    assert seen("peregrine.webhooks.queue.depth:1|g")
    ages = [float(line.split(":")[1].split("|")[0])
            for line in seen("peregrine.webhooks.queue.oldest_age_s:")]
    assert ages and max(ages) > 0
    receiver.close()
    assert deliveries(webhook_db, waiting)[0][0] == "pending"  # held by the paused subscription


def test_only_a_short_excerpt_of_an_answer_is_kept(webhook_db, sink, start_worker):
    sink.answers = [(500, {}, b"E" * 5000 + b"\x00\n<html>")] * 100
    subscribe(webhook_db, sink.url)
    start_worker()
    [event_id] = emit(webhook_db)
    wait_until(lambda: status_of(webhook_db, event_id) == "failed", timeout=10)
    assert deliveries(webhook_db, event_id)[0][2:] == (500, "E" * 200)


def test_an_endpoint_slower_than_the_timeout_is_a_failure_and_retried(
        webhook_db, sink, start_worker):
    sink.hold = threading.Event()  # never answers the first attempt in time
    subscribe(webhook_db, sink.url)
    start_worker(PEREGRINE_WEBHOOK_TIMEOUT="0.5", PEREGRINE_WEBHOOK_LEASE="2")
    [event_id] = emit(webhook_db)
    assert sink.arrived.wait(10)
    wait_until(lambda: status_of(webhook_db, event_id) == "failed", timeout=5)
    assert deliveries(webhook_db, event_id)[0][3] == "no answer within 0.5 s"
    sink.hold.set()
    sink.hold = None
    wait_until(lambda: status_of(webhook_db, event_id) == "succeeded", timeout=10)
    assert set(sink.ids()) == {event_id}
