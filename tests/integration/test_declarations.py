"""The ``@operation`` declaration is the one statement of a route's input and status.

Walks the routes table: a declared body or query reaches the responder as the
``body`` / ``query`` argument (so no responder decodes again), a declared
status is set by the declaration, and a responder that declares neither is
mounted exactly as written (the hot reads pay nothing).
"""

import inspect

import pytest

from app.operations import operation_of, responders
from app.routes import ROUTES
from tests.support.api import new_user

DECLARED = [
    pytest.param(route.resource, method, id=f"{method} {route.template}")
    for route in ROUTES for method in responders(route.resource)
]


@pytest.mark.parametrize(("resource", "method"), DECLARED)
def test_responders_take_exactly_the_declared_inputs(resource, method):
    op = operation_of(resource, method)
    responder = getattr(resource, f"on_{method.lower()}")
    parameters = inspect.signature(inspect.unwrap(responder)).parameters
    assert ("body" in parameters) is (op.body is not None)
    assert ("query" in parameters) is (op.query is not None)


@pytest.mark.parametrize(("resource", "method"), DECLARED)
def test_only_responders_with_something_declared_are_wrapped(resource, method):
    op = operation_of(resource, method)
    responder = getattr(resource, f"on_{method.lower()}")
    declares = op.body is not None or op.query is not None or op.status != 200
    assert hasattr(responder, "__wrapped__") is declares


def test_responders_do_not_decode_or_set_the_declared_status_themselves():
    for route in ROUTES:
        for method in responders(route.resource):
            source = inspect.getsource(inspect.unwrap(getattr(route.resource,
                                                              f"on_{method.lower()}")))
            assert "read_json(" not in source and "read_query(" not in source, route.template
            op = operation_of(route.resource, method)
            if op.status != 200:
                assert f"HTTP_{op.status}" not in source, (method, route.template)


def test_the_declared_status_is_answered_and_an_error_replaces_it(client, db):
    user = new_user(client)
    # Logout declares 204 and its responder sets no status.
    result = client.simulate_post("/v1/auth/logout",
                                  json={"refresh_token": user["refresh_token"]})
    assert result.status_code == 204, result.text
    assert result.content == b""
    # Set before the responder ran, the 204 gives way to the error's status.
    result = client.simulate_post("/v1/auth/logout", json={"refresh_token": "x" * 40})
    assert result.status_code == 401
    assert result.json["error"]["code"] == "unauthorized"
