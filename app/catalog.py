"""The catalog: cached reads, admin writes, invalidation after commit.

Reads return response bytes straight from memcached when they can (the body
is cached already encoded). Writes commit first and invalidate second, so the
next read after a write always sees it:

* a product's detail key is deleted;
* every cached list is dropped at once by bumping a generation number that
  is part of every list key (no key enumeration).

Stock moved by orders invalidates the product details but not the lists,
which may show stock up to LIST_TTL seconds old; orders always decide on
Postgres, never on the cache.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import UNSET

from app.cache import Cache, digest, key
from app.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from app.ids import is_uuid
from app.media import encoder
from app.pagination import UUIDText, decode_cursor, page
from app.queries import catalog as q
from app.readthrough import MISSING, ReadThrough
from app.schemas.catalog import (
    CategoryIn, CategoryList, CategoryOut, ProductIn, ProductOut, ProductPage, ProductPatch,
    ProductQuery,
)

DETAIL_TTL = 60
LIST_TTL = 30
NEGATIVE_TTL = 30
GENERATION_KEY = key("catalog", "generation")

# What a cursor holds per sort: (sort value, id), typed so junk is a 422, not SQL.
_CURSOR_TYPES = {"name": tuple[str, UUIDText], "price": tuple[Decimal, UUIDText],
                 "created_at": tuple[datetime, UUIDText]}


def etag(body: bytes) -> str:
    """A strong ETag: a digest of the exact representation."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


class Catalog:
    def __init__(self, pool, cache: Cache, metrics):
        self._pool = pool
        self._cache = cache
        self._metrics = metrics
        self._reads = ReadThrough(cache, metrics)

    # -- reads ------------------------------------------------------------------

    def product_body(self, product_id: str) -> bytes:
        if not is_uuid(product_id):
            raise NotFound("no such product")

        def load():
            with self._pool.connection() as conn, conn.cursor() as cur:
                product = q.product(cur, product_id)
            return MISSING if product is None else encoder.encode(product)

        body = self._reads.get(key("product", product_id), load, DETAIL_TTL, NEGATIVE_TTL,
                               "product")
        if body is MISSING:
            raise NotFound("no such product")
        return body

    def list_body(self, query: ProductQuery) -> bytes:
        sort_field = query.sort.lstrip("-")
        after = decode_cursor(query.cursor, _CURSOR_TYPES[sort_field]) if query.cursor else None

        def load():
            with self._pool.connection() as conn, conn.cursor() as cur:
                rows = q.search(cur, category=query.category, q=query.q,
                                min_price=query.min_price, max_price=query.max_price,
                                in_stock=query.in_stock, sort=query.sort, after=after,
                                limit=query.limit)
            items, cursor = page(rows, query.limit, lambda p: (_sort_value(p, sort_field), p.id))
            return encoder.encode(ProductPage(items=items, next_cursor=cursor))

        generation = self._generation()
        if generation is None:  # cache down: go straight to Postgres
            return load()
        list_key = key("products", generation, digest(msgspec.json.encode(query)))
        return self._reads.get(list_key, load, LIST_TTL, LIST_TTL, "products")

    def categories_body(self) -> bytes:
        def load():
            with self._pool.connection() as conn, conn.cursor() as cur:
                return encoder.encode(CategoryList(items=q.categories(cur)))

        generation = self._generation()
        if generation is None:
            return load()
        return self._reads.get(key("categories", generation), load, LIST_TTL, LIST_TTL,
                               "categories")

    # -- writes -----------------------------------------------------------------

    def create_category(self, body: CategoryIn) -> CategoryOut:
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                category = q.insert_category(cur, body.name, body.slug)
        except q.DuplicateSlug:
            raise Conflict("a category with this slug exists") from None
        self.invalidate_lists()
        return category

    def create_product(self, body: ProductIn) -> ProductOut:
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                product_id = q.insert_product(
                    cur, sku=body.sku, name=body.name, description=body.description,
                    price=body.price, currency=body.currency, category=body.category,
                    stock=body.stock)
                product = q.product(cur, product_id)
        except q.DuplicateSku:
            raise Conflict("a product with this sku exists") from None
        except q.UnknownCategory:
            raise _unknown_category() from None
        self.invalidate_lists()
        return product

    def update_product(self, product_id: str, patch: ProductPatch,
                       if_match: list[str] | None) -> tuple[ProductOut, bytes]:
        if not is_uuid(product_id):
            raise NotFound("no such product")
        changes = {f: v for f in patch.__struct_fields__
                   if (v := getattr(patch, f)) is not UNSET}
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                current = q.product(cur, product_id, lock=True)
                if current is None:
                    raise NotFound("no such product")
                if if_match is not None and not _matches(if_match, encoder.encode(current)):
                    raise PreconditionFailed("the product changed since you read it")
                if changes:
                    q.update_product(cur, product_id, changes)
                product = q.product(cur, product_id)
        except q.DuplicateSku:
            raise Conflict("a product with this sku exists") from None
        except q.UnknownCategory:
            raise _unknown_category() from None
        self.invalidate_products([product_id])
        return product, encoder.encode(product)

    def delete_product(self, product_id: str) -> None:
        if not is_uuid(product_id):
            raise NotFound("no such product")
        with self._pool.transaction() as conn, conn.cursor() as cur:
            if not q.delete_product(cur, product_id):
                raise NotFound("no such product")
        self.invalidate_products([product_id])

    # -- invalidation (always after commit) -------------------------------------

    def invalidate_products(self, product_ids, *, lists: bool = True) -> None:
        for product_id in product_ids:
            self._reads.forget(key("product", product_id))
        if lists:
            self.invalidate_lists()

    def invalidate_lists(self) -> None:
        if self._cache.incr(GENERATION_KEY) is None:
            self._new_generation()

    def _generation(self) -> bytes | None:
        value = self._cache.get(GENERATION_KEY)
        if value is None:
            value = self._new_generation()
        return value

    def _new_generation(self) -> bytes | None:
        # Time-based so a generation lost to eviction is never reused.
        fresh = str(int(time.time() * 1000)).encode()
        added = self._cache.add(GENERATION_KEY, fresh, ttl=0)
        if added is None:
            return None
        return fresh if added else self._cache.get(GENERATION_KEY)


def _sort_value(product: ProductOut, field: str) -> str:
    value = getattr(product, field)
    return value.isoformat() if field == "created_at" else value


def _matches(if_match: list[str], body: bytes) -> bool:
    return "*" in if_match or etag(body) in if_match


def _unknown_category() -> ValidationFailed:
    return ValidationFailed("no category has this slug",
                            details=[{"field": "$.category", "message": "unknown category"}])
