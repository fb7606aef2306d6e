"""Email verification: a real SMTP server, a real delivery worker, real Postgres."""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest

from tests.support.api import new_user
from tests.support.smtp import (
    SmtpServer,
    link_token,
    running_mail_worker,
    running_smtp_server,
    self_signed,
)
from tests.support.waiting import wait_until
from tests.support.webhooks import FAST, DeliveryWorker


@pytest.fixture
def smtp_server():
    yield from running_smtp_server()


@pytest.fixture
def mail_worker(base_env, db, tmp_path, smtp_server):
    yield from running_mail_worker(base_env, smtp_server, tmp_path / "deliver.log")


def request_verification(client, user):
    result = client.simulate_post("/v1/auth/email/verify-request", headers=user["headers"])
    assert result.status_code == 202, result.text
    return result


def verify(client, token):
    return client.simulate_post("/v1/auth/email/verify", json={"token": token})


def verified(client, user) -> bool:
    exported = client.simulate_get("/v1/users/me/export", headers=user["headers"])
    return exported.json["profile"]["email_verified"]


def test_the_mail_arrives_and_its_link_verifies_once(client, db, smtp_server, mail_worker):
    user = new_user(client)
    assert verified(client, user) is False
    request_verification(client, user)

    [(recipients, message, _)] = smtp_server.wait_for(1)
    assert recipients == [user["email"]]
    assert message["To"] == user["email"]
    assert message["Subject"] == "Confirm your email address"
    token = link_token(message)
    assert len(token) >= 43  # 256 bits, URL-safe base64

    first = verify(client, token)
    assert first.status_code == 200, first.text
    assert first.json["id"] == user["id"]
    assert first.json["email_verified"] is True
    assert verified(client, user) is True

    replay = verify(client, token)
    assert replay.status_code == 400
    assert replay.json["error"]["code"] == "bad_request"


def test_only_the_hash_of_a_token_is_kept_and_a_sent_mail_forgets_it(client, db, smtp_server,
                                                                       mail_worker):
    user = new_user(client)
    request_verification(client, user)
    [(_, message, _)] = smtp_server.wait_for(1)
    token = link_token(message)
    with db.cursor() as cur:
        cur.execute("SELECT token_hash, user_id::text FROM email_tokens")
        [(stored, owner)] = cur.fetchall()
        assert bytes(stored) == hashlib.sha256(token.encode()).digest()
        assert owner == user["id"]
        wait_until(lambda: _mail_status(cur) == ("sent", {}))
        cur.execute("SELECT count(*) FROM email_tokens WHERE token_hash::text LIKE %s",
                    (f"%{token}%",))
        assert cur.fetchone()[0] == 0


def _mail_status(cur):
    cur.execute("SELECT status, params FROM mails")
    return cur.fetchone()


def test_unknown_expired_and_foreign_tokens_are_refused(client, db):
    user = new_user(client)
    assert verify(client, secrets.token_urlsafe(32)).status_code == 400
    request_verification(client, user)
    # No SMTP here: the token is read from the queued mail.
    with db.cursor() as cur:
        cur.execute("SELECT params->>'link' FROM mails")
        token = cur.fetchone()[0].split("token=")[1]
        cur.execute("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
    assert verify(client, token).status_code == 400
    # A reset token is no verification token.
    with db.cursor() as cur:
        cur.execute("UPDATE email_tokens SET expires_at = now() + interval '1 hour',"
                    " purpose = 'reset_password'")
    assert verify(client, token).status_code == 400
    with db.cursor() as cur:
        cur.execute("UPDATE email_tokens SET purpose = 'verify_email'")
    assert verify(client, token).status_code == 200


def test_a_token_for_an_old_address_does_not_verify_a_new_one(client, db):
    user = new_user(client)
    request_verification(client, user)
    with db.cursor() as cur:
        cur.execute("SELECT params->>'link' FROM mails")
        token = cur.fetchone()[0].split("token=")[1]
        cur.execute("UPDATE users SET email = 'moved@example.test',"
                    " email_key = 'moved@example.test' WHERE id = %s", (user["id"],))
    assert verify(client, token).status_code == 400


def test_the_mail_is_queued_in_the_request_and_sent_by_the_worker(client, db):
    user = new_user(client)
    request_verification(client, user)
    with db.cursor() as cur:
        cur.execute("SELECT status, recipient, template FROM mails")
        assert cur.fetchall() == [("pending", user["email"], "verify_email")]


def test_a_verified_address_gets_no_more_mail(client, db):
    user = new_user(client)
    with db.cursor() as cur:
        cur.execute("UPDATE users SET email_verified_at = now()")
    request_verification(client, user)
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM mails")
        assert cur.fetchone()[0] == 0


def test_verification_requests_are_rate_limited_per_address(client, db):
    user = new_user(client)
    statuses = [client.simulate_post("/v1/auth/email/verify-request",
                                     headers={**user["headers"], "X-Real-IP": f"198.51.100.{i}"}
                                     ).status_code for i in range(7)]
    assert statuses[:5] == [202] * 5
    assert statuses[5:] == [429, 429]


@pytest.mark.slow
def test_a_refused_attempt_is_retried_and_a_rejected_address_is_given_up(client, db, smtp_server,
                                                                           mail_worker):
    smtp_server.fail_next = 2  # 451 twice, then accepted
    user = new_user(client)
    request_verification(client, user)
    smtp_server.wait_for(1)
    with db.cursor() as cur:
        wait_until(lambda: _mail_status(cur)[0] == "sent")
        cur.execute("SELECT attempts FROM mails")
        assert cur.fetchone()[0] == 3
        cur.execute("TRUNCATE mails")

    smtp_server.refuse_with = "550 no such mailbox"
    other = new_user(client)
    request_verification(client, other)
    with db.cursor() as cur:
        wait_until(lambda: _mail_status(cur) is not None and _mail_status(cur)[0] == "dead")
        cur.execute("SELECT attempts, params, last_error FROM mails")
        attempts, params, error = cur.fetchone()
    assert attempts == 1 and params == {}
    assert other["email"] not in error
    time.sleep(0.5)
    assert len(smtp_server.messages) == 1


def test_starttls_is_used_when_the_url_asks_for_it(client, db, base_env, tmp_path):
    cert, key = self_signed(tmp_path)
    server = SmtpServer(tls=(cert, key)).start()  # refuses mail before STARTTLS
    worker = DeliveryWorker({**base_env, **FAST, "PEREGRINE_SMTP_TIMEOUT": "2",
                             "PEREGRINE_SMTP_URL": f"{server.url}?starttls=1",
                             "SSL_CERT_FILE": str(cert)}, tmp_path / "deliver.log")
    try:
        worker.start()
        user = new_user(client)
        request_verification(client, user)
        [(_, message, tls)] = server.wait_for(1)
        assert tls is not None  # the session was encrypted
        assert link_token(message)
    finally:
        worker.stop()
        server.stop()
