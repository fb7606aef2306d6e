"""/v1/categories and /v1/products."""

from __future__ import annotations

import falcon

from app.catalog import etag
from app.etags import etag_of
from app.media import write_json
from app.operations import ADMIN, PUBLIC, operation
from app.schemas.catalog import (
    CategoryIn,
    CategoryList,
    CategoryOut,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    ProductQuery,
)


def _send_cached(req, resp, body: bytes) -> None:
    """Send a cached JSON body with its strong ETag, or 304 when the client has it."""
    tag = etag_of(body)
    resp.set_header("ETag", tag)
    # PERF: the WSGI environ read directly; get_header() normalises the name per call.
    if_none_match = req.env.get("HTTP_IF_NONE_MATCH")
    if if_none_match and (if_none_match.strip() == "*" or tag in _etags(if_none_match)):
        resp.status = falcon.HTTP_304
        return
    resp.data = body
    resp.content_type = falcon.MEDIA_JSON


def _etags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


class CategoriesResource:
    __slots__ = ("_catalog",)

    def __init__(self, deps):
        self._catalog = deps.catalog

    @operation(access=PUBLIC, summary="All categories", response=CategoryList, tag="catalog",
               replayable=True)
    def on_get(self, req, resp):
        _send_cached(req, resp, self._catalog.categories_body())

    @operation(access=ADMIN, summary="Create a category", body=CategoryIn,
               response=CategoryOut, status=201, errors=(409,), tag="catalog")
    def on_post(self, req, resp, body: CategoryIn):
        write_json(resp, self._catalog.create_category(body))


class ProductsResource:
    __slots__ = ("_catalog",)

    def __init__(self, deps):
        self._catalog = deps.catalog

    @operation(access=PUBLIC, summary="Search and list products", query=ProductQuery,
               response=ProductPage, tag="catalog", replayable=True)
    def on_get(self, req, resp, query: ProductQuery):
        _send_cached(req, resp, self._catalog.list_body(query))

    @operation(access=ADMIN, summary="Create a product", body=ProductIn, response=ProductOut,
               status=201, errors=(409,), tag="catalog")
    def on_post(self, req, resp, body: ProductIn):
        product = self._catalog.create_product(body)
        write_json(resp, product)
        resp.location = f"/v1/products/{product.id}"


class ProductResource:
    __slots__ = ("_catalog",)

    def __init__(self, deps):
        self._catalog = deps.catalog

    @operation(access=PUBLIC, summary="A product (strong ETag; If-None-Match gives 304)",
               response=ProductOut, errors=(404,), tag="catalog", replayable=True)
    def on_get(self, req, resp, product_id):
        _send_cached(req, resp, self._catalog.product_body(product_id))

    @operation(access=ADMIN, summary="Change a product (If-Match honoured)", body=ProductPatch,
               response=ProductOut, errors=(404, 409, 412), tag="catalog")
    def on_patch(self, req, resp, product_id, body: ProductPatch):
        if_match = req.get_header("If-Match")
        _, data = self._catalog.update_product(
            product_id, body, _etags(if_match) if if_match else None)
        resp.data = data
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("ETag", etag(data))

    @operation(access=ADMIN, summary="Delete a product", status=204, errors=(404,),
               tag="catalog")
    def on_delete(self, req, resp, product_id):
        self._catalog.delete_product(product_id)
