"""Revocation against rotation, under forced interleavings over HTTP.

Each test pins a refresh mid-flight: a third Postgres session holds the row
lock on the presented token, so the refresh blocks inside its transaction.
Then the revoking request (logout, reuse detection, password change) is sent
and left to block too, the lock is released, and both finish in the order
Postgres grants the locks. The token minted by the in-flight refresh must be
dead afterwards: revocation is final.
"""

from __future__ import annotations

import threading

import psycopg2

from app import tokens
from tests.support.api import PASSWORD, unique_email
from tests.support.http import request
from tests.support.waiting import lock_waiters, wait_until

_ips = iter(f"198.51.100.{n}" for n in range(1, 250))


def _login(url: str, email: str, password: str = PASSWORD) -> dict:
    result = request(url + "/v1/auth/login", "POST", {"email": email, "password": password},
                     headers={"X-Real-IP": next(_ips)})
    assert result.status == 200, result.body
    return result.json


def _account(url: str) -> tuple[str, dict]:
    email = unique_email("race")
    assert request(url + "/v1/auth/register", "POST",
                   {"email": email, "password": PASSWORD, "name": "R"}).status == 201
    return email, _login(url, email)


def _refresh(url: str, refresh_token: str):
    return request(url + "/v1/auth/refresh", "POST", {"refresh_token": refresh_token})


class _Call(threading.Thread):
    """An HTTP request on its own thread; ``result`` once joined."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self._fn, self._args, self.result = fn, args, None

    def run(self):
        self.result = self._fn(*self._args)


def _with_refresh_in_flight(dsn: str, url: str, refresh_token: str, revoke) -> tuple:
    """Block a refresh of ``refresh_token`` mid-transaction, run ``revoke`` into it."""
    holder = psycopg2.connect(dsn)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM refresh_tokens WHERE token_hash = %s FOR UPDATE",
                        (tokens.hash_refresh_token(refresh_token),))
            assert cur.fetchone() == (1,)
        refreshing = _Call(_refresh, url, refresh_token)
        refreshing.start()
        wait_until(lambda: lock_waiters(dsn) >= 1)
        revoking = _Call(revoke)
        revoking.start()
        wait_until(lambda: lock_waiters(dsn) >= 2)
    finally:
        holder.rollback()
        holder.close()
    refreshing.join(30)
    revoking.join(30)
    assert not refreshing.is_alive() and not revoking.is_alive()
    return refreshing.result, revoking.result


def test_logout_kills_the_token_a_refresh_in_flight_mints(live_server, postgres):
    url = live_server.url
    _, pair = _account(url)
    refreshed, logged_out = _with_refresh_in_flight(
        postgres.dsn(), url, pair["refresh_token"],
        lambda: request(url + "/v1/auth/logout", "POST",
                        {"refresh_token": pair["refresh_token"]}))
    assert logged_out.status == 204
    assert refreshed.status == 200  # it was first in line for the token
    child = refreshed.json["refresh_token"]
    assert _refresh(url, child).status == 401


def test_reuse_detection_kills_the_token_a_refresh_in_flight_mints(live_server, postgres):
    url = live_server.url
    _, pair = _account(url)
    spent = pair["refresh_token"]
    stolen = _refresh(url, spent).json["refresh_token"]  # the thief refreshes this one
    refreshed, replayed = _with_refresh_in_flight(
        postgres.dsn(), url, stolen, lambda: _refresh(url, spent))
    assert replayed.status == 401
    assert refreshed.status == 200
    assert _refresh(url, refreshed.json["refresh_token"]).status == 401


def test_password_change_kills_the_token_a_refresh_in_flight_mints(live_server, postgres):
    url = live_server.url
    _, pair = _account(url)

    def change_password():
        return request(url + "/v1/users/me", "PATCH",
                       {"current_password": PASSWORD, "password": "a brand new secret"},
                       headers={"Authorization": "Bearer " + pair["access_token"]})

    refreshed, changed = _with_refresh_in_flight(postgres.dsn(), url, pair["refresh_token"],
                                                 change_password)
    assert changed.status == 200
    assert refreshed.status == 200
    assert _refresh(url, refreshed.json["refresh_token"]).status == 401


def test_a_login_racing_a_password_change_gets_no_session(app, client, db, monkeypatch):
    """The password changes between the login's hash check and its new family."""
    email = unique_email("race")
    assert client.simulate_post("/v1/auth/register", json={
        "email": email, "password": PASSWORD, "name": "R"}).status_code == 201
    passwords = app.deps.accounts._passwords
    verify = passwords.verify

    def verify_then_change(password_hash, password):
        ok = verify(password_hash, password)
        # Another request changes the password and revokes every family,
        # and commits, while this login is still on its way.
        with db.cursor() as cur:
            cur.execute("UPDATE users SET password_hash = 'changed' WHERE email = %s", (email,))
            cur.execute("UPDATE refresh_families SET revoked_at = now()"
                        " WHERE user_id = (SELECT id FROM users WHERE email = %s)", (email,))
        return ok

    monkeypatch.setattr(passwords, "verify", verify_then_change)
    result = client.simulate_post("/v1/auth/login", json={"email": email, "password": PASSWORD},
                                  headers={"X-Real-IP": next(_ips)})
    assert result.status_code == 401, result.text
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM refresh_tokens")
        assert cur.fetchone()[0] == 0
