"""The OpenAPI document and a page that renders it for people."""

from __future__ import annotations

from importlib import resources as package_files

import falcon

from app.media import encoder
from app.operations import PUBLIC, operation


class OpenAPIResource:
    __slots__ = ("_body",)

    def __init__(self, services, document: dict):
        self._body = encoder.encode(document)  # built once per worker

    @operation(access=PUBLIC, summary="This OpenAPI document", tag="operations",
               rate_limited=False)
    def on_get(self, req, resp):
        resp.data = self._body
        resp.content_type = falcon.MEDIA_JSON


class DocsResource:
    __slots__ = ("_page",)

    def __init__(self, services):
        self._page = package_files.files("app").joinpath("static/docs.html").read_bytes()

    @operation(access=PUBLIC, summary="Human-readable API reference", tag="operations",
               rate_limited=False)
    def on_get(self, req, resp):
        resp.data = self._page
        resp.content_type = falcon.MEDIA_HTML
