"""Plain HTTP calls the harness makes around the runs: login, ids, bodies."""

import json
import urllib.request

PASSWORD = "peregrine-load-test"  # every seeded user's (python -m app seed)


def call(port: int, method: str, path: str, body=None, headers=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=dict(headers or {}),
        data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def login(port: int, attempt: int) -> str:
    """An access token for user0 (15 minutes). Logins are limited per address,
    and Peregrine trusts X-Real-IP from loopback, so each attempt has its own."""
    body = {"email": "user0@example.test", "password": PASSWORD}
    ip = f"10.98.{attempt // 250}.{attempt % 250 + 1}"
    return call(port, "POST", "/v1/auth/login", body, {"X-Real-IP": ip})["access_token"]


def product_ids(port: int, count: int) -> list[str]:
    ids, cursor = [], None
    while len(ids) < count:
        page = call(port, "GET", "/v1/products?limit=100" + (f"&cursor={cursor}" if cursor else ""))
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return ids[:count]


def category_slugs(port: int) -> list[str]:
    return [c["slug"] for c in call(port, "GET", "/v1/categories")["items"]]
