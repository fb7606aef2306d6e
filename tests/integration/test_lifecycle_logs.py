"""No email, password, token, code or secret of the account lifecycle reaches a log line.

A real gunicorn server and a real delivery worker, both logging at debug,
go through every flow; then both captured logs are searched for every
secret value the flows used.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from cryptography.fernet import Fernet

from tests.support.api import PASSWORD, unique_email
from tests.support.http import request
from tests.support.smtp import link_token, running_smtp_server
from tests.support.webhooks import FAST, DeliveryWorker

NEW_PASSWORD = "a brand new passphrase"


@pytest.mark.slow
def test_no_secret_is_logged(live_server_factory, base_env, smtp_server, tmp_path):
    data_key = Fernet.generate_key().decode()
    server = live_server_factory(PEREGRINE_DATA_KEY=data_key, PEREGRINE_LOG_LEVEL="debug")
    worker = DeliveryWorker({**base_env, **FAST, "PEREGRINE_LOG_LEVEL": "debug",
                             "PEREGRINE_SMTP_URL": smtp_server.url,
                             "PEREGRINE_SMTP_TIMEOUT": "2"}, tmp_path / "deliver.log")
    worker.start()
    try:
        secrets_used = _every_flow(server.url, smtp_server)
    finally:
        worker.stop()
        server.stop()
    secrets_used.append(data_key)
    logs = {"server": server.log(), "worker": worker.log()}
    # The logs were captured, and hold what the flows did.
    assert "/v1/auth/password/reset" in logs["server"], logs["server"][-2000:]
    assert "delivering mail" in logs["worker"], logs["worker"][-2000:]
    for name, text in logs.items():
        for value in secrets_used:
            # Whole values only: a six-digit code may well be part of a longer number.
            found = re.search(rf"(?<![0-9A-Za-z_-]){re.escape(value)}(?![0-9A-Za-z_-])", text,
                              re.IGNORECASE)
            assert found is None, f"{value!r} appears in the {name} log"


@pytest.fixture
def smtp_server():
    yield from running_smtp_server()


def _every_flow(base: str, smtp) -> list[str]:
    def call(method, path, body=None, token=None, expect=200):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = request(base + path, method, body, headers)
        assert answer.status == expect, (path, answer.status, answer.body)
        return answer.json if answer.body else None

    email = unique_email("secretive")
    call("POST", "/v1/auth/register", {"email": email, "password": PASSWORD, "name": "S"},
         expect=201)
    pair = call("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
    call("POST", "/v1/auth/email/verify-request", token=pair["access_token"], expect=202)
    verify_token = link_token(smtp.wait_for(1)[0][1])
    call("POST", "/v1/auth/email/verify", {"token": verify_token})

    call("POST", "/v1/auth/password/reset-request", {"email": email.upper()}, expect=202)
    reset_token = link_token(smtp.wait_for(2)[1][1])
    call("POST", "/v1/auth/password/reset", {"token": reset_token,
                                              "new_password": NEW_PASSWORD}, expect=204)
    call("POST", "/v1/auth/password/reset", {"token": reset_token,
                                              "new_password": NEW_PASSWORD}, expect=400)

    pair = call("POST", "/v1/auth/login", {"email": email, "password": NEW_PASSWORD})
    access = pair["access_token"]
    enrolment = call("POST", "/v1/users/me/mfa/totp", {"current_password": NEW_PASSWORD},
                     token=access, expect=201)
    secret = enrolment["secret"]
    totp = pyotp.TOTP(secret)
    first_code = totp.now()
    codes = call("POST", "/v1/users/me/mfa/totp/confirm", {"code": first_code},
                 token=access)["recovery_codes"]
    challenged = call("POST", "/v1/auth/login", {"email": email, "password": NEW_PASSWORD},
                      expect=401)
    mfa_token = challenged["error"]["details"][0]["mfa_token"]
    next_code = totp.at(time.time() + 30)
    second = call("POST", "/v1/auth/login/mfa", {"mfa_token": mfa_token, "code": next_code})
    call("POST", "/v1/auth/login/mfa", {"mfa_token": mfa_token, "code": next_code}, expect=401)
    challenged = call("POST", "/v1/auth/login", {"email": email, "password": NEW_PASSWORD},
                      expect=401)
    recovery_token = challenged["error"]["details"][0]["mfa_token"]
    third = call("POST", "/v1/auth/login/mfa", {"mfa_token": recovery_token, "code": codes[0]})

    call("GET", "/v1/users/me/export", token=third["access_token"])
    call("DELETE", "/v1/users/me", {"current_password": NEW_PASSWORD},
         token=third["access_token"], expect=204)
    return [email, PASSWORD, NEW_PASSWORD, verify_token, reset_token, secret, first_code,
            next_code, mfa_token, recovery_token, *codes, pair["refresh_token"],
            pair["access_token"], second["refresh_token"], third["access_token"]]
