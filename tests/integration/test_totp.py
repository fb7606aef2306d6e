"""TOTP two-factor sign-in against real Postgres: enrolment, the two-step login, limits."""

from __future__ import annotations

import time

import pyotp
import pytest
from cryptography.fernet import Fernet

from app.config import Config
from tests.support.api import PASSWORD, bearer, new_user

DATA_KEY = Fernet.generate_key().decode()


@pytest.fixture
def config(base_env) -> Config:
    return Config.from_env({**base_env, "PEREGRINE_DATA_KEY": DATA_KEY})


def enrol(client, user):
    started = client.simulate_post("/v1/users/me/mfa/totp", headers=user["headers"],
                                   json={"current_password": PASSWORD})
    assert started.status_code == 201, started.text
    return started.json


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def confirm(client, user, code):
    return client.simulate_post("/v1/users/me/mfa/totp/confirm", headers=user["headers"],
                                json={"code": code})


def enrolled(client):
    user = new_user(client)
    secret = enrol(client, user)["secret"]
    confirmed = confirm(client, user, code_at(secret))
    assert confirmed.status_code == 200, confirmed.text
    return user, secret, confirmed.json["recovery_codes"]


def password_login(client, email, ip="203.0.113.70"):
    return client.simulate_post("/v1/auth/login", json={"email": email, "password": PASSWORD},
                                headers={"X-Real-IP": ip})


def challenge(client, email) -> str:
    answer = password_login(client, email)
    assert answer.status_code == 401, answer.text
    assert answer.json["error"]["code"] == "mfa_required"
    [details] = answer.json["error"]["details"]
    assert details["expires_in"] == 300
    return details["mfa_token"]


def second_step(client, mfa_token, code, ip="203.0.113.70"):
    return client.simulate_post("/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": code},
                                headers={"X-Real-IP": ip})


def audit_actions(db, user_id):
    with db.cursor() as cur:
        cur.execute("SELECT action FROM audit_log WHERE subject_id = %s ORDER BY id", (user_id,))
        return [row[0] for row in cur.fetchall()]


def test_enrolment_is_inactive_until_a_code_confirms_it(client, db):
    user = new_user(client)
    started = enrol(client, user)
    assert started["otpauth_uri"].startswith("otpauth://totp/Peregrine:")
    assert f"secret={started['secret']}" in started["otpauth_uri"]
    # Not confirmed: a password login still opens a session.
    assert password_login(client, user["email"]).status_code == 200
    assert confirm(client, user, "000000" if code_at(started["secret"]) != "000000"
                   else "111111").status_code == 400
    confirmed = confirm(client, user, code_at(started["secret"]))
    assert confirmed.status_code == 200
    codes = confirmed.json["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert password_login(client, user["email"]).json["error"]["code"] == "mfa_required"
    # Confirmed once: a second confirmation, or a new enrolment, is a conflict.
    assert confirm(client, user, code_at(started["secret"], 1)).status_code == 409
    assert client.simulate_post("/v1/users/me/mfa/totp", headers=user["headers"],
                                json={"current_password": PASSWORD}).status_code == 409
    assert audit_actions(db, user["id"])[-5:] == [
        "user.mfa_enrolment_started", "auth.login", "user.mfa_confirm_failed",
        "user.mfa_enabled", "auth.mfa_challenged"]


def test_enrolment_needs_the_password(client, db):
    user = new_user(client)
    wrong = client.simulate_post("/v1/users/me/mfa/totp", headers=user["headers"],
                                 json={"current_password": "not the password"})
    assert wrong.status_code == 403


def test_the_secret_is_stored_sealed_and_recovery_codes_hashed(client, db):
    user, secret, codes = enrolled(client)
    with db.cursor() as cur:
        cur.execute("SELECT secret_sealed FROM user_totp WHERE user_id = %s", (user["id"],))
        sealed = bytes(cur.fetchone()[0])
        cur.execute("SELECT code_hash FROM recovery_codes WHERE user_id = %s", (user["id"],))
        hashes = [bytes(row[0]) for row in cur.fetchall()]
    assert secret.encode() not in sealed
    assert Fernet(DATA_KEY.encode()).decrypt(sealed) == secret.encode()
    assert len(hashes) == 10
    assert not any(code.replace("-", "").encode() in h for code in codes for h in hashes)


def test_login_with_a_code_and_a_replayed_code_is_refused(client, db):
    user, secret, _ = enrolled(client)
    token = challenge(client, user["email"])
    code = code_at(secret, 1)  # the next step: the confirming code used this one
    pair = second_step(client, token, code)
    assert pair.status_code == 200, pair.text
    me = client.simulate_get("/v1/users/me", headers=bearer(pair.json["access_token"]))
    assert me.status_code == 200 and me.json["id"] == user["id"]
    # The same code again, in a fresh challenge and within its window.
    again = second_step(client, challenge(client, user["email"]), code)
    assert again.status_code == 401
    # The mfa_token was spent by the login.
    assert second_step(client, token, code_at(secret, -1)).status_code == 401
    assert "auth.mfa_failed" in audit_actions(db, user["id"])


def test_codes_one_step_off_are_accepted_and_two_are_not(client, db):
    user, secret, _ = enrolled(client)
    assert second_step(client, challenge(client, user["email"]),
                       code_at(secret, 2)).status_code == 401
    assert second_step(client, challenge(client, user["email"]),
                       code_at(secret, 1)).status_code == 200


def test_a_recovery_code_works_once(client, db):
    user, _, codes = enrolled(client)
    first = second_step(client, challenge(client, user["email"]), codes[0].upper())
    assert first.status_code == 200, first.text
    assert second_step(client, challenge(client, user["email"]), codes[0]).status_code == 401
    assert second_step(client, challenge(client, user["email"]), codes[1]).status_code == 200
    with db.cursor() as cur:
        cur.execute("SELECT details->>'remaining' FROM audit_log"
                    " WHERE action = 'user.recovery_code_used' ORDER BY id")
        assert [row[0] for row in cur.fetchall()] == ["9", "8"]


def test_wrong_codes_kill_the_token_and_are_rate_limited(client, db):
    user, secret, _ = enrolled(client)
    token = challenge(client, user["email"])
    wrong = "000000" if code_at(secret, 1) != "000000" else "111111"
    assert [second_step(client, token, wrong).status_code for _ in range(5)] == [401] * 5
    # Five wrong codes: the right one no longer helps with this token.
    assert second_step(client, token, code_at(secret, 1)).status_code == 401
    # Per account: new tokens do not buy new guesses without end.
    statuses = [second_step(client, challenge(client, user["email"]), wrong).status_code
                for _ in range(6)]
    assert 429 in statuses


def test_a_password_change_voids_a_pending_challenge(client, db):
    user, secret, _ = enrolled(client)
    token = challenge(client, user["email"])
    with db.cursor() as cur:
        cur.execute("UPDATE users SET password_hash = password_hash || 'x' WHERE id = %s",
                    (user["id"],))
    assert second_step(client, token, code_at(secret, 1)).status_code == 401


def test_turning_it_off_needs_the_password_and_a_code(client, db):
    user, secret, codes = enrolled(client)
    headers = user["headers"]
    wrong_password = client.simulate_delete("/v1/users/me/mfa/totp", headers=headers, json={
        "current_password": "not the password", "code": code_at(secret, 1)})
    assert wrong_password.status_code == 403
    wrong_code = client.simulate_delete("/v1/users/me/mfa/totp", headers=headers, json={
        "current_password": PASSWORD, "code": "12345"})
    assert wrong_code.status_code == 403
    off = client.simulate_delete("/v1/users/me/mfa/totp", headers=headers, json={
        "current_password": PASSWORD, "code": codes[3]})
    assert off.status_code == 204, off.text
    assert password_login(client, user["email"]).status_code == 200
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM recovery_codes WHERE user_id = %s", (user["id"],))
        assert cur.fetchone()[0] == 0
    assert audit_actions(db, user["id"])[-4:] == [
        "user.mfa_disable_failed", "user.recovery_code_used", "user.mfa_disabled", "auth.login"]


def test_without_a_data_key_enrolment_is_unavailable(base_env, db, cache_flushed):
    import falcon.testing

    from app.factory import create_app

    unkeyed = {name: value for name, value in base_env.items() if name != "PEREGRINE_DATA_KEY"}
    application = create_app(Config.from_env(unkeyed), configure_logging=False)
    try:
        client = falcon.testing.TestClient(application)
        user = new_user(client)
        answer = client.simulate_post("/v1/users/me/mfa/totp", headers=user["headers"],
                                      json={"current_password": PASSWORD})
        assert answer.status_code == 503
    finally:
        application.deps.close()
