"""Every route x {anonymous, user, admin}, generated from the routes table.

A route added without thought for who may call it fails here: the expected
outcome comes from its @operation declaration, and the request carries no
body, so nothing is changed by the sweep.
"""

import re
import uuid

import pytest

from app.operations import ADMIN, PUBLIC, USER, operation_of, responders
from app.routes import ROUTES
from tests.support.api import new_user

CASES = [
    (route.template, method, operation_of(route.resource, method).access)
    for route in ROUTES
    for method in [*responders(route.resource),
                   *(["HEAD"] if "GET" in responders(route.resource) else [])]
]


def concrete(template: str) -> str:
    return re.sub(r"{\w+}", str(uuid.uuid4()), template)


@pytest.fixture
def callers(client, db):
    return {
        "anonymous": {},
        "user": new_user(client)["headers"],
        "admin": new_user(client, "admin", db)["headers"],
    }


@pytest.mark.parametrize(("template", "method", "access"), CASES,
                         ids=[f"{m} {t}" for t, m, _ in CASES])
def test_route_enforces_its_declared_access(client, callers, template, method, access):
    path = concrete(template)
    outcome = {
        who: client.simulate_request(method, path, headers=headers).status_code
        for who, headers in callers.items()
    }
    if access == PUBLIC:
        assert outcome["anonymous"] not in (401, 403), outcome
    else:
        assert outcome["anonymous"] == 401, outcome
    if access == USER:
        assert outcome["user"] not in (401, 403) and outcome["admin"] not in (401, 403), outcome
    if access == ADMIN:
        assert outcome["user"] == 403, outcome
        assert outcome["admin"] not in (401, 403), outcome


def test_every_access_level_is_exercised():
    assert {access for _, _, access in CASES} == {PUBLIC, USER, ADMIN}


def test_head_answers_like_get_without_a_body(client, db):
    admin = new_user(client, "admin", db)
    for path, headers in (("/v1/products", {}), ("/healthz", {}),
                          ("/v1/users/me", admin["headers"])):
        got = client.simulate_get(path, headers=headers)
        head = client.simulate_head(path, headers=headers)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Length"] == str(len(got.content))
        assert head.headers["Content-Type"] == got.headers["Content-Type"]
    anonymous = client.simulate_head("/v1/users/me")
    assert anonymous.status_code == 401
