"""Auth flows against real Postgres and memcached."""

import base64
import json
import time

import jwt as pyjwt
import pytest

from app import tokens
from tests.conftest import JWT_SECRET
from tests.support.api import PASSWORD, bearer, login, new_user, register, unique_email


def audit_actions(db):
    with db.cursor() as cur:
        cur.execute("SELECT action FROM audit_log ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def test_register_login_me_refresh_reuse_logout(client, db):
    email = unique_email()
    user = register(client, email, name="Ada")
    assert set(user) == {"id", "email", "name", "role", "created_at"}
    assert user["role"] == "user" and user["email"] == email

    pair = login(client, email)
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
    me = client.simulate_get("/v1/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200 and me.json == user

    first_refresh = pair["refresh_token"]
    rotated = client.simulate_post("/v1/auth/refresh", json={"refresh_token": first_refresh})
    assert rotated.status_code == 200
    second_refresh = rotated.json["refresh_token"]
    assert second_refresh != first_refresh
    assert client.simulate_get("/v1/users/me",
                               headers=bearer(rotated.json["access_token"])).status_code == 200

    # The spent token is rejected, and its whole family with it.
    reuse = client.simulate_post("/v1/auth/refresh", json={"refresh_token": first_refresh})
    assert reuse.status_code == 401 and reuse.json["error"]["code"] == "unauthorized"
    dead = client.simulate_post("/v1/auth/refresh", json={"refresh_token": second_refresh})
    assert dead.status_code == 401
    assert "auth.refresh_reuse" in audit_actions(db)

    # A new login starts a new family, which logout revokes.
    fresh = login(client, email)
    assert client.simulate_post("/v1/auth/logout",
                                json={"refresh_token": fresh["refresh_token"]}).status_code == 204
    after = client.simulate_post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert after.status_code == 401
    again = client.simulate_post("/v1/auth/logout", json={"refresh_token": fresh["refresh_token"]})
    assert again.status_code == 401


def test_refresh_tokens_are_stored_only_as_hashes(client, db):
    email = unique_email()
    register(client, email)
    pair = login(client, email)
    with db.cursor() as cur:
        cur.execute("SELECT token_hash FROM refresh_tokens")
        stored = [bytes(row[0]) for row in cur.fetchall()]
    assert stored == [tokens.hash_refresh_token(pair["refresh_token"])]
    assert len(base64.urlsafe_b64decode(pair["refresh_token"] + "=")) == 32


def test_email_is_case_insensitively_unique(client):
    register(client, "Grace@Example.test")
    result = client.simulate_post("/v1/auth/register", json={
        "email": "grace@example.TEST", "password": PASSWORD, "name": "Other"})
    assert result.status_code == 409 and result.json["error"]["code"] == "conflict"
    assert login(client, "GRACE@example.test")["access_token"]


def test_role_in_register_body_is_422_and_creates_nobody(client, db):
    result = client.simulate_post("/v1/auth/register", json={
        "email": "mallory@example.test", "password": PASSWORD, "name": "M", "role": "admin"})
    assert result.status_code == 422
    assert result.json["error"]["details"][0]["field"] == "$.role"
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM users")
        assert cur.fetchone()[0] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "not-an-email", "password": PASSWORD, "name": "x"}, "$.email"),
    ({"email": "a@example.test", "password": "short", "name": "x"}, "$.password"),
    ({"email": "a@example.test", "password": "p" * 129, "name": "x"}, "$.password"),
    ({"email": "a@example.test", "password": PASSWORD, "name": ""}, "$.name"),
    ({"email": "a@example.test", "password": PASSWORD, "name": "n" * 101}, "$.name"),
    ({"email": "a@example.test", "password": PASSWORD}, "$.name"),
])
def test_register_validation(client, body, field):
    result = client.simulate_post("/v1/auth/register", json=body)
    assert result.status_code == 422
    assert result.json["error"]["details"][0]["field"] == field


def test_login_failure_is_identical_for_unknown_email_and_wrong_password(client, db):
    email = unique_email()
    register(client, email)
    wrong = client.simulate_post("/v1/auth/login", json={"email": email, "password": "wrong pass"})
    unknown = client.simulate_post("/v1/auth/login",
                                   json={"email": "nobody@example.test", "password": "wrong pass"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json["error"] == unknown.json["error"]
    assert audit_actions(db).count("auth.login_failed") == 2


def test_unknown_email_still_costs_a_hash(client):
    email = unique_email()
    register(client, email)

    def timed(address):
        started = time.perf_counter()
        client.simulate_post("/v1/auth/login", json={"email": address, "password": "wrong pass"},
                             headers={"X-Real-IP": "198.51.100.1"})
        return time.perf_counter() - started

    known = min(timed(email) for _ in range(3))
    unknown = min(timed("ghost@example.test") for _ in range(3))
    # Both run one argon2 verification; without the dummy hash "unknown" is ~100x faster.
    assert unknown > known / 3


def test_login_audit_records_success(client, db):
    email = unique_email()
    register(client, email)
    login(client, email)
    assert "auth.login" in audit_actions(db)


def test_change_password_revokes_every_refresh_family(client):
    user = new_user(client)
    other_session = login(client, user["email"])
    wrong = client.simulate_patch("/v1/users/me", headers=user["headers"],
                                  json={"current_password": "not it", "password": "new password 1"})
    assert wrong.status_code == 403
    changed = client.simulate_patch("/v1/users/me", headers=user["headers"],
                                    json={"current_password": PASSWORD,
                                          "password": "new password 1"})
    assert changed.status_code == 200
    for refresh in (user["refresh_token"], other_session["refresh_token"]):
        assert client.simulate_post("/v1/auth/refresh",
                                    json={"refresh_token": refresh}).status_code == 401
    assert login(client, user["email"], "new password 1")["access_token"]


def test_patch_me_changes_name_and_rejects_role(client):
    user = new_user(client)
    renamed = client.simulate_patch("/v1/users/me", headers=user["headers"],
                                    json={"current_password": PASSWORD, "name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json["name"] == "Renamed"
    escalate = client.simulate_patch("/v1/users/me", headers=user["headers"],
                                     json={"current_password": PASSWORD, "role": "admin"})
    assert escalate.status_code == 422


def make_token(claims=None, headers=None, secret=JWT_SECRET, algorithm="HS256"):
    now = int(time.time())
    base = {"sub": "00000000-0000-4000-8000-000000000000", "role": "user", "iat": now,
            "exp": now + 600, "iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "jti": "j"}
    base.update(claims or {})
    base = {k: v for k, v in base.items() if v is not None}
    return pyjwt.encode(base, secret, algorithm=algorithm,
                        headers={"typ": tokens.TOKEN_TYPE, **(headers or {})})


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(header: dict, claims: dict) -> str:
    return f"{b64(header)}.{b64(claims)}."


def _valid_claims():
    return json.loads(base64.urlsafe_b64decode(make_token().split(".")[1] + "=="))


BAD_TOKENS = {
    "expired": lambda: make_token({"exp": int(time.time()) - 120}),
    "tampered": lambda: make_token()[:-3] + ("AAA" if not make_token().endswith("AAA") else "BBB"),
    "wrong secret": lambda: make_token(secret="another-secret-" + "y" * 40),
    "alg none": lambda: forged({"alg": "none", "typ": "at+jwt"}, _valid_claims()),
    # (a 64-byte key keeps PyJWT quiet; the verifier refuses the algorithm first)
    "alg HS512": lambda: make_token(algorithm="HS512", secret=JWT_SECRET * 2),
    "alg RS256 header": lambda: forged({"alg": "RS256", "typ": "at+jwt"}, _valid_claims()) + "sig",
    "wrong aud": lambda: make_token({"aud": "someone-else"}),
    "wrong iss": lambda: make_token({"iss": "evil"}),
    "wrong typ": lambda: make_token(headers={"typ": "JWT"}),
    "future nbf": lambda: make_token({"nbf": int(time.time()) + 600}),
    "no exp": lambda: make_token({"exp": None}),
    "padded": lambda: ".".join(part + "=" for part in make_token().split(".")),
    "non-base64url": lambda: make_token().replace("-", "+").replace("_", "/") + "+/",
    "two segments": lambda: ".".join(make_token().split(".")[:2]),
    "garbage": lambda: "not-a-token",
    "huge": lambda: make_token({"pad": "x" * 5000}),
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_access_tokens_are_401_with_the_envelope(client, kind):
    result = client.simulate_get("/v1/users/me", headers=bearer(BAD_TOKENS[kind]()))
    assert result.status_code == 401, kind
    assert result.json["error"]["code"] == "unauthorized"
    challenge = result.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    # Only an expired token is told that a refresh fixes it.
    assert ("refresh it" in challenge) == (kind == "expired"), challenge


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "token"])
def test_malformed_authorization_headers_are_401(client, header):
    result = client.simulate_get("/v1/users/me", headers={"Authorization": header})
    assert result.status_code == 401


def test_a_valid_token_made_here_is_accepted(client):
    user = new_user(client)
    token = make_token({"sub": user["id"]})
    assert client.simulate_get("/v1/users/me", headers=bearer(token)).status_code == 200


def test_access_tokens_carry_the_contract_claims(client):
    user = new_user(client)
    header = pyjwt.get_unverified_header(user["access_token"])
    claims = pyjwt.decode(user["access_token"], JWT_SECRET, algorithms=["HS256"],
                          audience=tokens.AUDIENCE, issuer=tokens.ISSUER)
    assert header["typ"] == "at+jwt" and header["alg"] == "HS256"
    assert set(claims) == {"sub", "role", "iat", "exp", "iss", "aud", "jti"}
    assert claims["exp"] - claims["iat"] <= 15 * 60
    assert claims["sub"] == user["id"]
