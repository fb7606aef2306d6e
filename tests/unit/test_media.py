"""Reading and writing JSON bodies within the contract's limits (falcon requests, no server)."""

from __future__ import annotations

import io
from typing import Annotated, Literal

import falcon
import falcon.testing
import msgspec
import pytest

from app import media
from app.errors import BadRequest, ClientDisconnected, PayloadTooLarge, UnsupportedMediaType
from app.schemas.text import Text
from hotpath.http import HttpError

JSON = {"Content-Type": "application/json"}


class Line(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Annotated[int, msgspec.Meta(ge=1)]


class Basket(msgspec.Struct, forbid_unknown_fields=True):
    lines: list[Line]
    note: Text(max_length=100) = ""


def request(body: bytes = b"", headers=JSON, chunked: bool = False) -> falcon.Request:
    env = falcon.testing.create_environ(method="POST", body=body, headers=headers)
    if chunked:
        del env["CONTENT_LENGTH"]
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    return falcon.Request(env)


def with_stream(stream, headers=None) -> falcon.Request:
    env = falcon.testing.create_environ(method="POST", headers={**JSON, **(headers or {})})
    env["wsgi.input"] = stream
    env["CONTENT_LENGTH"] = "10"
    return falcon.Request(env)


@pytest.mark.parametrize("content_type", [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON;charset=\"UTF-8\"",
    "application/json ; charset=utf-8 ;",
])
def test_json_content_types_accepted(content_type):
    assert media.is_json(content_type)


@pytest.mark.parametrize("content_type", [
    None, "", "text/plain", "application/json-patch+json", "application/jsonx",
    "application/json; charset=latin-1", "application/json; boundary=x",
    "text/json; charset=utf-8",
])
def test_other_content_types_refused(content_type):
    assert not media.is_json(content_type)


def test_a_valid_body_decodes_into_the_schema():
    basket = media.read_json(request(b'{"lines": [{"quantity": 2}], "note": "hi"}'), Basket)
    assert basket == Basket(lines=[Line(quantity=2)], note="hi")


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"lines": [{"quantity": 37.0}]}', 37),
    (b'{"lines": [{"quantity": 2e1}]}', 20),
    (b'{"lines": [{"quantity": -0.0}, {"quantity": 1}]}', None),
])
def test_whole_number_floats_count_as_integers(body, expected):
    if expected is None:  # -0.0 is the integer 0, which is below the minimum
        with pytest.raises(msgspec.ValidationError, match=r"\$\.lines\[0\]\.quantity"):
            media.read_json(request(body), Basket)
        return
    basket = media.read_json(request(body), Basket)
    assert basket.lines[0].quantity == expected and type(basket.lines[0].quantity) is int


@pytest.mark.parametrize("body", [
    b'{"lines": [{"quantity": 37.5}]}',
    b'{"lines": [{"quantity": "37"}]}',
    b'{"lines": [{"quantity": true}]}',
    b'{"lines": [{"quantity": 1}], "note": 1.0}',
])
def test_nothing_else_is_coerced(body):
    with pytest.raises(msgspec.ValidationError):
        media.read_json(request(body), Basket)


def test_unknown_fields_are_refused():
    with pytest.raises(msgspec.ValidationError, match="unknown field `extra`"):
        media.read_json(request(b'{"lines": [], "extra": 1}'), Basket)


def test_a_nul_in_text_is_a_validation_error():
    with pytest.raises(msgspec.ValidationError, match=r"\$\.note"):
        media.read_json(request(b'{"lines": [], "note": "a\\u0000b"}'), Basket)


def test_an_empty_body_is_a_400():
    with pytest.raises(BadRequest, match="body is required"):
        media.read_json(request(b""), Basket)


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "text/plain"},
                                     {"Content-Type": "application/x-www-form-urlencoded"}])
def test_a_body_that_is_not_json_by_its_content_type_is_a_415(headers):
    with pytest.raises(UnsupportedMediaType):
        media.read_json(request(b'{"lines": []}', headers=headers), Basket)


@pytest.mark.parametrize("body", [
    b"{", b'{"lines": }', b'{"lines": []} trailing', b"NaN", b"\xef\xbb\xbf{}",
])
def test_malformed_json_is_a_400(body):
    with pytest.raises(BadRequest, match="not valid JSON"):
        media.read_json(request(body), Basket)


def test_invalid_utf8_is_a_400():
    with pytest.raises(BadRequest):
        media.read_json(request(b'{"lines": [], "note": "\xff\xfe"}'), Basket)


def test_a_declared_oversized_body_is_refused_before_reading():
    env = falcon.testing.create_environ(method="POST", headers=JSON)
    env["CONTENT_LENGTH"] = str(media.MAX_BODY_BYTES + 1)
    env["wsgi.input"] = io.BytesIO()  # reading it would find nothing
    with pytest.raises(PayloadTooLarge):
        media.read_json(falcon.Request(env), Basket)


def test_a_body_at_the_limit_is_read():
    padding = media.MAX_BODY_BYTES - len(b'{"lines": [], "note": ""}')
    body = b'{"lines": [], "note": ""}' + b" " * padding
    assert len(body) == media.MAX_BODY_BYTES
    assert media.read_json(request(body), Basket) == Basket(lines=[])


def test_a_chunked_body_is_bounded_too():
    at_limit = b'{"lines": []}'.ljust(media.MAX_BODY_BYTES)
    assert media.read_json(request(at_limit, chunked=True), Basket) == Basket(lines=[])
    with pytest.raises(PayloadTooLarge):
        media.read_json(request(at_limit + b" ", chunked=True), Basket)


def test_no_length_and_not_chunked_is_an_empty_body():
    env = falcon.testing.create_environ(method="POST", headers=JSON)
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = io.BytesIO(b'{"lines": []}')
    assert media.read_body(falcon.Request(env)) == b""


class Failing(io.RawIOBase):
    def __init__(self, error):
        self.error = error

    def read(self, size=-1):
        raise self.error


def test_a_connection_lost_mid_body_is_a_client_disconnect():
    with pytest.raises(ClientDisconnected):
        media.read_body(with_stream(Failing(ConnectionResetError())))


@pytest.mark.parametrize(("status", "error"), [(413, PayloadTooLarge), (400, BadRequest)])
def test_broken_framing_from_the_worker_is_a_client_error(status, error):
    broken = HttpError(status, "bad_request", "invalid chunk size")
    with pytest.raises(error, match="invalid chunk size"):
        media.read_body(with_stream(Failing(broken)))


class Page(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    in_stock: bool | None = None


def query(string: str) -> falcon.Request:
    return falcon.Request(falcon.testing.create_environ(query_string=string))


def test_query_strings_are_converted_to_the_schemas_types():
    assert media.read_query(query("limit=5&in_stock=true"), Page) == Page(5, True)
    assert media.read_query(query(""), Page) == Page()


@pytest.mark.parametrize("string", ["limit=0", "limit=101", "limit=ten", "page=2"])
def test_bad_query_strings_are_validation_errors(string):
    with pytest.raises(msgspec.ValidationError):
        media.read_query(query(string), Page)


def test_write_json_sets_the_body_and_its_type():
    resp = falcon.Response()
    media.write_json(resp, Basket(lines=[Line(1)]))
    assert resp.content_type == falcon.MEDIA_JSON
    assert msgspec.json.decode(resp.data) == {"lines": [{"quantity": 1}], "note": ""}


class Filters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    in_stock: bool | None = None
    sort: Literal["name", "-name"] | None = None
    q: str | None = None


def query_request(query_string: str) -> falcon.Request:
    return falcon.Request(falcon.testing.create_environ(query_string=query_string))


@pytest.mark.parametrize(("query_string", "field"), [
    ("in_stock=null", "$.in_stock"), ("sort=null", "$.sort"),
])
def test_the_text_null_is_not_taken_as_left_out(query_string, field):
    # msgspec's lax conversion reads "null" as None for a non-string field.
    with pytest.raises(msgspec.ValidationError) as info:
        media.read_query(query_request(query_string), Filters)
    assert f"`{field}`" in str(info.value)


def test_the_text_null_is_kept_where_text_is_allowed():
    assert media.read_query(query_request("q=null"), Filters).q == "null"
    assert media.read_query(query_request("in_stock=true"), Filters).in_stock is True
