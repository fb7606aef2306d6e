"""Helpers that drive the API through a falcon TestClient."""

from __future__ import annotations

import itertools

PASSWORD = "correct horse battery"
_counter = itertools.count()


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.test"


def register(client, email: str | None = None, password: str = PASSWORD, name: str = "Test User"):
    email = email or unique_email()
    result = client.simulate_post("/v1/auth/register",
                                  json={"email": email, "password": password, "name": name})
    assert result.status_code == 201, result.text
    return result.json


def login(client, email: str, password: str = PASSWORD, ip: str = "203.0.113.9"):
    result = client.simulate_post("/v1/auth/login", json={"email": email, "password": password},
                                  headers={"X-Real-IP": ip})
    assert result.status_code == 200, result.text
    return result.json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(client, role: str = "user", db=None):
    """Register and log in a user; make it an admin directly in the database if asked."""
    email = unique_email(role)
    user = register(client, email)
    if role == "admin":
        with db.cursor() as cur:
            cur.execute("UPDATE users SET role = 'admin' WHERE id = %s", (user["id"],))
    tokens = login(client, email)
    return {**user, **tokens, "email": email, "headers": bearer(tokens["access_token"])}
