"""Domain exceptions become the contract's status and envelope through errors.register."""

from __future__ import annotations

import logging

import falcon
import falcon.testing
import msgspec
import pytest

from app import errors
from app.middleware import RequestContext
from tests.unit.fakes import RecordingMetrics


class Raises:
    """A resource whose GET raises whatever the test put in ``error``."""

    error: BaseException | None = None

    def on_get(self, req, resp):
        raise self.error


@pytest.fixture
def raising():
    resource = Raises()
    app = falcon.App(middleware=[RequestContext(RecordingMetrics())])
    app.resp_options.xml_error_serialization = False
    errors.register(app)
    app.add_route("/boom", resource)
    client = falcon.testing.TestClient(app)

    def call(error, method="GET", path="/boom", headers=None):
        resource.error = error
        return client.simulate_request(method, path, headers=headers)

    return call


def envelope(result) -> dict:
    assert result.headers["Content-Type"] == "application/json"
    body = result.json
    assert set(body) == {"error", "request_id", "trace_id"}
    assert body["request_id"] == result.headers["X-Request-ID"]
    assert body["trace_id"] == result.headers["traceparent"].split("-")[1]
    return body["error"]


# The contract's code table, status by status.
@pytest.mark.parametrize(("exception", "status", "code"), [
    (errors.BadRequest, 400, "bad_request"),
    (errors.Unauthorized, 401, "unauthorized"),
    (errors.AccountGone, 401, "unauthorized"),
    (errors.Forbidden, 403, "forbidden"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.OutOfStock, 409, "out_of_stock"),
    (errors.PreconditionFailed, 412, "precondition_failed"),
    (errors.PayloadTooLarge, 413, "payload_too_large"),
    (errors.UnsupportedMediaType, 415, "unsupported_media_type"),
    (errors.ValidationFailed, 422, "validation_failed"),
    (errors.Unavailable, 503, "unavailable"),
    (errors.DatabaseUnavailable, 503, "unavailable"),
    (errors.QueryTimeout, 503, "unavailable"),
])
def test_each_domain_error_has_its_contract_status_and_code(raising, exception, status, code):
    result = raising(exception())
    assert result.status_code == status
    error = envelope(result)
    assert error == {"code": code, "message": exception.default_message}


def test_message_and_details_are_passed_through(raising):
    details = [{"field": "$.email", "message": "taken"}]
    error = envelope(raising(errors.Conflict("email already registered", details=details)))
    assert error == {"code": "conflict", "message": "email already registered",
                     "details": details}


def test_empty_details_are_left_out(raising):
    assert "details" not in envelope(raising(errors.NotFound("gone", details=[])))


def test_rate_limited_carries_retry_after_of_at_least_one_second(raising):
    result = raising(errors.RateLimited(17.9))
    assert (result.status_code, result.headers["Retry-After"]) == (429, "17")
    assert envelope(result)["code"] == "rate_limited"
    assert raising(errors.RateLimited(0)).headers["Retry-After"] == "1"


def test_unavailable_carries_retry_after(raising):
    assert raising(errors.Unavailable()).headers["Retry-After"] == "1"
    assert raising(errors.DatabaseUnavailable(retry_after=5)).headers["Retry-After"] == "5"


def test_unauthorized_challenges_with_an_rfc6750_description(raising):
    result = raising(errors.Unauthorized('the "token" is bad\\'))
    assert result.headers["WWW-Authenticate"] == (
        "Bearer error=\"invalid_token\", error_description=\"the 'token' is bad\"")


def test_unexpected_exceptions_are_a_bare_500_and_logged(raising, caplog):
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        result = raising(KeyError("secret internals"))
    assert result.status_code == 500
    assert envelope(result) == {"code": "internal", "message": "internal error"}
    assert "secret internals" not in result.text
    assert any(record.exc_info for record in caplog.records)


def test_a_client_that_went_away_is_499_without_a_traceback(raising, caplog):
    with caplog.at_level(logging.INFO, logger="app.errors"):
        result = raising(errors.ClientDisconnected())
    assert result.status_code == 499
    assert envelope(result)["code"] == "client_disconnected"
    assert caplog.records and not any(record.exc_info for record in caplog.records)


def test_a_validation_error_escaping_a_responder_is_a_422_with_its_field(raising):
    class Item(msgspec.Struct):
        quantity: int

    try:
        msgspec.convert({"quantity": "x"}, Item)
    except msgspec.ValidationError as ex:
        caught = ex
    result = raising(caught)
    assert result.status_code == 422
    error = envelope(result)
    assert error["code"] == "validation_failed"
    assert error["details"] == [
        {"field": "$.quantity", "message": "must be a whole number, not a string"}]


@pytest.mark.parametrize(("falcon_error", "status", "code"), [
    (falcon.HTTPBadRequest(), 400, "bad_request"),
    (falcon.HTTPForbidden(), 403, "forbidden"),
    (falcon.HTTPLengthRequired(), 411, "bad_request"),
    (falcon.HTTPUnsupportedMediaType(), 415, "unsupported_media_type"),
    (falcon.HTTPTooManyRequests(), 429, "rate_limited"),
    (falcon.HTTPError(falcon.HTTP_418), 418, "bad_request"),
    (falcon.HTTPBadGateway(), 502, "internal"),
    (falcon.HTTPServiceUnavailable(), 503, "unavailable"),
])
def test_falcons_own_errors_use_the_same_envelope(raising, falcon_error, status, code):
    result = raising(falcon_error)
    assert result.status_code == status
    error = envelope(result)
    assert error["code"] == code and error["message"]


def test_unknown_route_and_wrong_method_use_the_envelope(raising):
    missing = raising(None, path="/nowhere")
    assert missing.status_code == 404
    assert envelope(missing) == {"code": "not_found", "message": "no such resource"}
    wrong = raising(None, method="DELETE")
    assert wrong.status_code == 405
    assert envelope(wrong)["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_the_client_request_id_is_the_envelopes(raising):
    result = raising(errors.NotFound(), headers={"X-Request-ID": "abc.DEF-123_x"})
    assert result.json["request_id"] == "abc.DEF-123_x"
    replaced = raising(errors.NotFound(), headers={"X-Request-ID": "bad id"})
    assert replaced.json["request_id"] != "bad id"
    assert len(replaced.json["request_id"]) == 32
