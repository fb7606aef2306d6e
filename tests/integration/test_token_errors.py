"""What a 401 tells the client, and tokens that must never reach SQL."""

from __future__ import annotations

import time
import uuid

import jwt as pyjwt
import pytest

from app import tokens
from tests.conftest import JWT_SECRET
from tests.support.api import new_user

ADDRESS = {"line1": "1 Main St", "city": "X", "postal_code": "1", "country": "US"}


def _token(**claims) -> str:
    now = int(time.time())
    body = {"sub": str(uuid.uuid4()), "role": "user", "iat": now, "exp": now + 60,
            "iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "jti": "j", **claims}
    return pyjwt.encode(body, JWT_SECRET, algorithm="HS256", headers={"typ": tokens.TOKEN_TYPE})


def _challenge(result) -> str:
    assert result.status_code == 401, result.text
    assert result.json["error"]["code"] == "unauthorized"
    return result.headers["WWW-Authenticate"]


def test_an_expired_token_is_told_to_refresh_an_invalid_one_to_log_in(client):
    expired = client.simulate_get("/v1/users/me", headers={
        "Authorization": "Bearer " + _token(iat=int(time.time()) - 3600,
                                            exp=int(time.time()) - 600)})
    challenge = _challenge(expired)
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert "refresh" in challenge
    forged = client.simulate_get("/v1/users/me", headers={"Authorization": "Bearer x.y.z"})
    challenge = _challenge(forged)
    assert 'error="invalid_token"' in challenge and "log in" in challenge
    assert "refresh" not in challenge
    missing = client.simulate_get("/v1/users/me")
    assert 'error="invalid_token"' in _challenge(missing)


@pytest.mark.parametrize("sub", ["x' OR '1'='1", "not-a-uuid", "", 7,
                                 str(uuid.uuid4()).upper() + "\n"])
@pytest.mark.parametrize("role", ["user", "admin"])
def test_a_signed_token_with_a_foreign_subject_is_401(client, db, sub, role):
    result = client.simulate_get("/v1/users/me",
                                 headers={"Authorization": "Bearer " + _token(sub=sub, role=role)})
    _challenge(result)


def test_a_token_that_outlived_its_account_is_401_everywhere(client, db):
    user = new_user(client)
    with db.cursor() as cur:
        cur.execute("DELETE FROM users WHERE id = %s", (user["id"],))
    headers = user["headers"]
    assert "no longer exists" in _challenge(client.simulate_get("/v1/users/me", headers=headers))
    _challenge(client.simulate_get(f"/v1/users/{user['id']}", headers=headers))
    _challenge(client.simulate_patch("/v1/users/me", headers=headers,
                                     json={"current_password": "whatever", "name": "N"}))
