"""Abuse of the business rules over HTTP: orders, other people's ids, a token storm.

- Order bodies: quantities out of 1-100 or of the wrong type, duplicate
  lines, 51 lines, unknown products, and fields the server owns (price,
  total, status, user_id, ...) -> 422 with the envelope; never a 201 that
  moved stock wrongly.
- Other users' ids everywhere an id is accepted: someone else's order or
  account is a 404 (as if it did not exist), ``?user_id=`` never widens a
  user's view, admin routes are 403.
- A storm on one account (refreshes on several families, reuse of spent
  tokens, logouts and a password change, all at once): afterwards no token
  seen during the storm refreshes, and no family is half-rotated.
"""

from __future__ import annotations

import json
import random
import time
import uuid

import gevent

from tests.abuse.common import Client, Row, envelope_problem, new_account, short
from tests.faults.__main__ import ADDRESS

PASSWORD = "abuse-password-1"


def order_body(items, address=ADDRESS, **extra):
    return {"items": items, "shipping_address": address, **extra}


def stock(client, product: str) -> int:
    status, _, body = client.call("GET", f"/v1/products/{product}")
    assert status == 200, body
    return json.loads(body)["stock"]


def expect(row: Row, name: str, answer, statuses: tuple[int, ...], code: str | None = None):
    status, headers, body = answer
    problem = None if status in statuses else f"{status}, expected {statuses}: {short(body)}"
    if problem is None and status >= 400:
        problem = envelope_problem(status, headers, body, code)
    row.case(problem is None, f"{name}: {problem}")
    return status, body


def orders(port: int, seeded, created: dict) -> Row:
    row = Row("business: hostile order bodies -> 422")
    user = seeded.users[0]
    client = Client(port)
    p0, p1 = seeded.products[0], seeded.products[1]
    before = {p: stock(client, p) for p in (p0, p1)}

    def post(name, body, statuses=(422,), code="validation_failed"):
        status, data = expect(row, name, client.call(
            "POST", "/v1/orders", body, user["headers"]), statuses, code)
        if status == 201:
            created[json.loads(data)["id"]] = json.loads(data)
        return status, data

    for q in (0, -1, 101, 10**6, 2**31, 2**63, 2**70, 1.5, 100.5, "1", None, True, [], {}):
        post(f"quantity {q!r}", order_body([{"product_id": p0, "quantity": q}]))
    # JSON has one number type: 2.0 is the integer 2 (the schema's "integer").
    status, body = post("quantity 2.0", order_body([{"product_id": p1, "quantity": 2.0}]),
                        (201,), None)
    whole = 2 if status == 201 else 0
    post("quantity missing", order_body([{"product_id": p0}]))
    post("product_id missing", order_body([{"quantity": 1}]))
    post("no lines", order_body([]))
    post("51 lines", order_body([{"product_id": seeded.products[n % len(seeded.products)],
                                  "quantity": 1} for n in range(51)]))
    for name, pid in (("unknown product (random uuid)", str(uuid.uuid4())),
                      ("product id not a uuid", "not-a-uuid"),
                      ("product id SQL", "' OR 1=1 --"),
                      ("product id a number", 12345)):
        post(name, order_body([{"product_id": pid, "quantity": 1}]), (404, 422), None)
    for name, extra in (("price", {"price": "0.01"}), ("total", {"total": "0.00"}),
                        ("status", {"status": "cancelled"}),
                        ("user_id", {"user_id": seeded.users[1]["id"]}),
                        ("currency", {"currency": "XXX"}), ("id", {"id": str(uuid.uuid4())}),
                        ("created_at", {"created_at": "2000-01-01T00:00:00Z"})):
        post(f"order field {name!r}", order_body([{"product_id": p0, "quantity": 1}], **extra))
    for name in ("unit_price", "price", "total", "discount"):
        post(f"line field {name!r}", order_body([{"product_id": p0, "quantity": 1, name: "0.01"}]))
    post("address field 'user_id'", order_body([{"product_id": p0, "quantity": 1}],
                                               {**ADDRESS, "user_id": seeded.users[1]["id"]}))
    post("address country 'usa'", order_body([{"product_id": p0, "quantity": 1}],
                                             {**ADDRESS, "country": "usa"}))
    post("address missing", {"items": [{"product_id": p0, "quantity": 1}]})
    # Duplicate lines: the contract is silent; whatever the server does, the
    # stock must move by exactly what the order says (or not at all).
    status, body = post("duplicate lines", order_body([{"product_id": p1, "quantity": 2},
                                                       {"product_id": p1, "quantity": 3}]),
                        (201, 409, 422), None)
    expected_p1 = before[p1] - whole - (5 if status == 201 else 0)
    if status == 201:
        doc = json.loads(body)
        row.case(sum(i["quantity"] for i in doc["items"]) == 5,
                 f"duplicate lines: the order holds {doc['items']}, not 5 units")
    after = {p: stock(client, p) for p in (p0, p1)}
    row.case(after[p0] == before[p0], f"stock of the refused orders' product moved: "
                                      f"{before[p0]} -> {after[p0]}")
    row.case(after[p1] == expected_p1, f"duplicate lines moved stock {before[p1]} -> {after[p1]},"
                                       f" expected {expected_p1}")
    # Server-owned fields elsewhere.
    for name, method, path, body, who in (
        ("register with role admin", "POST", "/v1/auth/register",
         {"email": f"mass{random.randrange(10**9)}@example.test", "password": PASSWORD,
          "name": "M", "role": "admin"}, None),
        ("register with id", "POST", "/v1/auth/register",
         {"email": f"mass{random.randrange(10**9)}@example.test", "password": PASSWORD,
          "name": "M", "id": str(uuid.uuid4())}, None),
        ("PATCH me with role", "PATCH", "/v1/users/me",
         {"current_password": PASSWORD, "role": "admin"}, user),
        ("PATCH me with email", "PATCH", "/v1/users/me",
         {"current_password": PASSWORD, "email": "x@example.test"}, user),
        ("PATCH product with id", "PATCH", f"/v1/products/{p0}", {"id": str(uuid.uuid4())},
         seeded.admin),
        ("PATCH product with created_at", "PATCH", f"/v1/products/{p0}",
         {"created_at": "2000-01-01T00:00:00Z"}, seeded.admin),
        ("POST product with id", "POST", "/v1/products",
         {"sku": "ABUSE-1", "name": "x", "price": "1.00", "stock": 1, "id": str(uuid.uuid4())},
         seeded.admin),
        ("PATCH user with email", "PATCH", f"/v1/users/{user['id']}",
         {"email": "x@example.test"}, seeded.admin),
        ("refresh with extra field", "POST", "/v1/auth/refresh",
         {"refresh_token": user["refresh"], "user_id": seeded.users[1]["id"]}, None),
    ):
        headers = {**(who["headers"] if who else {}), "X-Real-IP": f"10.60.0.{row.cases % 200}"}
        expect(row, name, client.call(method, path, body, headers), (422,), "validation_failed")
    client.close()
    return row


def other_ids(port: int, seeded) -> Row:
    """User A (users[0]) reaching for user B's (users[1]) things."""
    row = Row("business: other users' ids -> 404/403")
    a, b = seeded.users[0], seeded.users[1]
    client = Client(port)
    status, _, body = client.call("POST", "/v1/orders", order_body(
        [{"product_id": seeded.products[2], "quantity": 1}]), b["headers"])
    assert status == 201, body
    order = json.loads(body)["id"]
    for name, method, path, statuses in (
        ("GET B's order", "GET", f"/v1/orders/{order}", (404,)),
        ("GET B's order, upper case id", "GET", f"/v1/orders/{order.upper()}", (404,)),
        ("HEAD B's order", "HEAD", f"/v1/orders/{order}", (404,)),
        ("cancel B's order", "POST", f"/v1/orders/{order}/cancel", (404,)),
        ("cancel B's order, upper case id", "POST", f"/v1/orders/{order.upper()}/cancel", (404,)),
        ("GET B's account", "GET", f"/v1/users/{b['id']}", (404,)),
        ("GET B's account, upper case id", "GET", f"/v1/users/{b['id'].upper()}", (404,)),
        ("GET the admin's account", "GET", f"/v1/users/{seeded.admin['id']}", (404,)),
        ("PATCH B's account", "PATCH", f"/v1/users/{b['id']}", (403,)),
        ("PATCH own role", "PATCH", f"/v1/users/{a['id']}", (403,)),
        ("list users", "GET", "/v1/users", (403,)),
        ("create a category", "POST", "/v1/categories", (403,)),
        ("PATCH a product", "PATCH", f"/v1/products/{seeded.products[2]}", (403,)),
        ("DELETE a product", "DELETE", f"/v1/products/{seeded.products[2]}", (403,)),
    ):
        body = {"role": "admin"} if method == "PATCH" and "users" in path else (
            {"name": "x", "slug": "x"} if "categories" in path else (
                {"price": "0.01"} if method == "PATCH" else None))
        answer = client.call(method, path, body, a["headers"])
        if method == "HEAD":
            row.case(answer[0] in statuses, f"{name}: {answer[0]}")
        else:
            expect(row, name, answer, statuses)
    # ?user_id= must never widen a user's view: B's order never shows up.
    for name, query in (("?user_id=B", f"?user_id={b['id']}"),
                        ("?user_id=B upper case", f"?user_id={b['id'].upper()}"),
                        ("?user_id=A&user_id=B", f"?user_id={a['id']}&user_id={b['id']}"),
                        ("?user_id[]=B", f"?user_id[]={b['id']}")):
        status, headers, body = client.call("GET", f"/v1/orders{query}", headers=a["headers"])
        if status == 200:
            items = json.loads(body)["items"]
            foreign = [o["id"] for o in items if o.get("user_id") != a["id"]]
            row.case(not foreign, f"{name}: 200 with {len(foreign)} order(s) of another user")
        else:
            expect(row, name, (status, headers, body), (403, 404, 422))
    # The order is untouched.
    status, _, body = client.call("GET", f"/v1/orders/{order}", headers=b["headers"])
    row.case(status == 200 and json.loads(body)["status"] == "placed",
             f"B's order after A's attempts: {status} {short(body)}")
    # Admin: ?user_id= narrows to that user.
    status, _, body = client.call("GET", f"/v1/orders?user_id={b['id']}",
                                  headers=seeded.admin["headers"])
    row.case(status == 200 and all(o["user_id"] == b["id"] for o in json.loads(body)["items"])
             and order in [o["id"] for o in json.loads(body)["items"]],
             f"admin ?user_id=B: {status} {short(body)}")
    client.close()
    return row


def storm(stack, families: int = 4, seconds: float = 4.0) -> Row:
    """Refresh, reuse, logout and password change on one account at once."""
    row = Row("business: refresh/logout/password storm")
    port = stack.port
    email = f"storm{random.randrange(10**9)}@example.test"
    first = new_account(port, email, PASSWORD, "10.70.0.1")
    chains = [first["refresh"]]
    for n in range(1, families):
        status, _, body = Client(port).call("POST", "/v1/auth/login",
                                            {"email": email, "password": PASSWORD},
                                            {"X-Real-IP": f"10.70.0.{n + 1}"})
        assert status == 200, body
        chains.append(json.loads(body)["refresh_token"])
    seen: set[str] = set(chains)
    statuses: dict[int, int] = {}
    bad: list[str] = []
    changed = {"at": None, "status": None}
    deadline = time.monotonic() + seconds

    def note(status, headers, body, what):
        statuses[status] = statuses.get(status, 0) + 1
        if status >= 500 and not (status == 503 and "retry-after" in headers):
            bad.append(f"{what}: {status} {short(body)}")

    def refresher(n: int):
        client, rng = Client(port), random.Random(n)
        token = chains[n % families]
        spent: list[str] = []
        while time.monotonic() < deadline:
            use = rng.choice(spent) if spent and rng.random() < 0.1 else token
            try:
                status, headers, body = client.call("POST", "/v1/auth/refresh",
                                                    {"refresh_token": use})
            except OSError as ex:
                bad.append(f"refresh: {ex}")
                continue
            note(status, headers, body, "refresh")
            if status == 200:
                pair = json.loads(body)
                seen.add(pair["refresh_token"])
                spent.append(use)
                token = pair["refresh_token"]
            elif status == 401:
                gevent.sleep(0.01)
        client.close()

    def logout(n: int):
        gevent.sleep(seconds * 0.3)
        client = Client(port)
        note(*client.call("POST", "/v1/auth/logout", {"refresh_token": chains[n]}), "logout")

    def change_password():
        gevent.sleep(seconds * 0.5)
        status, headers, body = Client(port).call(
            "PATCH", "/v1/users/me", {"current_password": PASSWORD, "password": PASSWORD + "x"},
            first["headers"])
        note(status, headers, body, "password change")
        changed.update(at=time.monotonic(), status=status)

    jobs = [gevent.spawn(refresher, n) for n in range(families * 3)]
    jobs += [gevent.spawn(logout, 0), gevent.spawn(change_password)]
    gevent.joinall(jobs, timeout=seconds + 20)
    row.case(all(j.dead for j in jobs), "storm greenlets did not finish")
    row.case(changed["status"] == 200, f"the password change answered {changed['status']}")
    for problem in bad[:10]:
        row.case(False, problem)
    # Nothing seen during the storm may refresh now: every family was revoked
    # by the password change (logout and reuse revoked some earlier).
    client = Client(port)
    live = 0
    for token in seen:
        status = client.call("POST", "/v1/auth/refresh", {"refresh_token": token})[0]
        live += status != 401
    row.case(live == 0, f"{live} of {len(seen)} refresh tokens from the storm still refresh")
    row.cases += len(seen) - 1
    # The account works with the new password only.
    old = client.call("POST", "/v1/auth/login", {"email": email, "password": PASSWORD},
                      {"X-Real-IP": "10.70.1.1"})[0]
    new = client.call("POST", "/v1/auth/login", {"email": email, "password": PASSWORD + "x"},
                      {"X-Real-IP": "10.70.1.2"})[0]
    row.case(old == 401 and new == 200, f"after the change: old password {old}, new {new}")
    client.close()
    # No family half-rotated (the make-faults data checks, on this account).
    half = stack.sql(
        "SELECT count(*) FROM refresh_tokens p JOIN users u ON u.id = p.user_id"
        " WHERE u.email = %s AND p.used_at IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent_id = p.id)", (email,))[0][0]
    row.case(half == 0, f"{half} spent token(s) without a child")
    row.note = (f"{sum(statuses.values())} calls, {len(seen)} tokens, "
                + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    return row


def run(stack, seeded) -> tuple[list[Row], dict]:
    created: dict = {}
    rows = [orders(stack.port, seeded, created), other_ids(stack.port, seeded), storm(stack)]
    return rows, created
