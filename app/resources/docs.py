"""The OpenAPI document, and the interactive reference (Swagger UI) that renders it.

Swagger UI's files are vendored in app/static (see VENDORED.md) and served
from here, so /docs works with no CDN. Each asset's URL carries a digest of
its bytes: the files can be cached for a year, and a new release changes the
URLs the page names.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources as package_files
from typing import NamedTuple

import falcon

from app.errors import NotFound
from app.media import encoder
from app.operations import PUBLIC, operation

ASSET_PREFIX = "/docs/assets/"
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
# Scripts, styles, the document and try-it-out requests: all from this origin.
# data: images are the icons inlined in swagger-ui.css, not requests.
_CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class Asset(NamedTuple):
    body: bytes
    content_type: str
    etag: str


class Assets(NamedTuple):
    by_url_name: dict[str, Asset]  # "swagger-ui.<digest>.css" -> Asset
    url_of: dict[str, str]  # "swagger-ui.css" -> "/docs/assets/swagger-ui.<digest>.css"


@functools.cache
def load_assets() -> Assets:
    """Read the assets once per process; both resources share them."""
    static = package_files.files("app").joinpath("static")
    by_url_name, url_of = {}, {}
    for name, content_type in _ASSET_TYPES.items():
        body = static.joinpath(name).read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:16]
        stem, _, extension = name.rpartition(".")
        url_name = f"{stem}.{digest}.{extension}"
        by_url_name[url_name] = Asset(body, content_type, f'"{digest}"')
        url_of[name] = ASSET_PREFIX + url_name
    return Assets(by_url_name, url_of)


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
        page = package_files.files("app").joinpath("static/docs.html").read_text("utf-8")
        for name, url in load_assets().url_of.items():
            page = page.replace("{" + name + "}", url)
        self._page = page.encode()

    @operation(access=PUBLIC, summary="Interactive API reference (Swagger UI)",
               tag="operations", rate_limited=False)
    def on_get(self, req, resp):
        resp.data = self._page
        resp.content_type = "text/html; charset=utf-8"
        # Revalidated on every visit, so a release's new asset URLs are seen.
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", _CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")


class DocsAssetResource:
    """The files /docs loads; listed nowhere else, so kept out of the OpenAPI document."""

    __slots__ = ("_assets",)
    in_openapi = False

    def __init__(self, services):
        self._assets = load_assets().by_url_name

    @operation(access=PUBLIC, summary="A static file of the API reference page",
               errors=(404,), tag="operations", rate_limited=False)
    def on_get(self, req, resp, name):
        asset = self._assets.get(name)
        if asset is None:
            raise NotFound("no such asset")
        resp.cache_control = [_IMMUTABLE]
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.etag = asset.etag
        if req.get_header("If-None-Match") == asset.etag:
            resp.status = falcon.HTTP_304
            return
        resp.data = asset.body
        resp.content_type = asset.content_type
