"""The catalog: cached reads, admin writes, invalidation after commit.

Reads return response bytes straight from memcached when they can (the body
is cached already encoded). Writes commit first and invalidate second, so the
next read after a write always sees it:

* a product's detail key is deleted;
* every cached list is dropped at once by bumping a generation number that
  is part of every list key (no key enumeration).

Stock moved by orders invalidates both too: lists show ``stock``, and the
contract allows no older value past one second (so every order drops the
cached lists; they are cheap to rebuild).

Why that is enough under any interleaving:

* a reader that loaded the old row before the commit cannot store it after
  the delete: fills are ``cas`` against a token read before the load
  (app/readthrough.py);
* a delete or ``incr`` that cannot reach its memcached node (timeout, open
  breaker) retires that node's epoch, so its old keys are never read again:
  by this worker at once, by every other one within the epoch poll interval,
  which such a write waits out before answering (app/cache_epochs.py);
* a lost generation key (evicted, or its node's epoch retired) is recreated
  from 62 random bits, never a value an earlier generation counted through,
  so no list key of an older generation can come back.

An optional per-process near cache (app/nearcache.py) sits in front of
memcached for detail bodies, list pages, categories and the generation key.
Every write bumps the shared slots of the keys it invalidated (detail keys
and the generation key) after the memcached invalidation and before it
answers, so no worker of this node serves an older near entry afterwards;
list and category entries need no slot bump of their own: their keys hold the
generation, and the generation's near entry is what the bump fails.

Concurrent writers of one worker share invalidation rounds (the replica mark,
the generation ``incr``, the deletes, the bump): each waits for a round that
began after its commit, which is all the arguments above need
(app/coalescing.py).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime
from decimal import Decimal

import gevent
import msgspec
from msgspec import UNSET

from app import replay
from app.cache import Cache, digest, key
from app.coalescing import Coalescer
from app.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from app.ids import is_uuid
from app.media import encoder
from app.pagination import UUIDText, decode_cursor, page
from app.queries import categories as category_queries
from app.queries import events as outbox
from app.queries import products as product_queries
from app.readthrough import MISSING, ReadThrough
from app.replicas import Replicas
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
        self._near = None
        self._announcer = None  # an app.near_listener.Announcer, or None
        # Where cache misses, lists and search are read: the primary until
        # replicas are attached (app/replicas.py says when they may answer).
        self.replicas = Replicas(pool, cache, metrics=metrics)
        self._invalidation = Coalescer(self._invalidate, metrics, "catalog.invalidation")

    def use_replicas(self, replicas: Replicas) -> None:
        """Let catalog reads go to ``replicas`` when they have replayed every catalog write."""
        self.replicas.close()
        self.replicas = replicas

    @property
    def reads(self) -> ReadThrough:
        """The read-through cache the catalog's cached reads go through."""
        return self._reads

    @property
    def near(self):
        """The near cache in front of memcached, or None."""
        return self._near

    def use_near_cache(self, near) -> None:
        """Put ``near`` (an app.nearcache.NearCache, or None) in front of memcached."""
        self._near = near
        self._reads.near = near

    def announce_invalidations(self, announcer) -> None:
        """Tell other nodes' near caches what each write invalidated, through ``announcer``."""
        self._announcer = announcer

    # -- reads ------------------------------------------------------------------

    def product_body(self, product_id: str) -> bytes:
        if not is_uuid(product_id):
            raise NotFound("no such product")

        def load():
            product = self.replicas.read(lambda cur: product_queries.product(cur, product_id))
            return MISSING if product is None else encoder.encode(product)

        body = self._reads.get(key("product", product_id), load, DETAIL_TTL, NEGATIVE_TTL,
                               "product")
        if body is MISSING:
            raise NotFound("no such product")
        return body

    def list_body(self, query: ProductQuery) -> bytes:
        sort_field = query.sort.lstrip("-")
        after = decode_cursor(query.cursor, _CURSOR_TYPES[sort_field]) if query.cursor else None

        def search(cur):
            return product_queries.search(cur, category=query.category, q=query.q,
                                          min_price=query.min_price, max_price=query.max_price,
                                          in_stock=query.in_stock, sort=query.sort, after=after,
                                          limit=query.limit)

        def load():
            rows = self.replicas.read(search)
            items, cursor = page(rows, query.limit, lambda p: (_sort_value(p, sort_field), p.id))
            return encoder.encode(ProductPage(items=items, next_cursor=cursor))

        generation = self._generation()
        if generation is None:  # cache down: go straight to Postgres
            return load()
        list_key = key("products", generation, digest(msgspec.json.encode(query)))
        return self._reads.get(list_key, load, LIST_TTL, LIST_TTL, "products")

    def categories_body(self) -> bytes:
        def load():
            categories = self.replicas.read(category_queries.categories)
            return encoder.encode(CategoryList(items=categories))

        generation = self._generation()
        if generation is None:
            return load()
        return self._reads.get(key("categories", generation), load, LIST_TTL, LIST_TTL,
                               "categories")

    # -- writes -----------------------------------------------------------------

    def create_category(self, body: CategoryIn) -> CategoryOut:
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                category = category_queries.insert_category(cur, body.name, body.slug)
        except category_queries.DuplicateSlug:
            raise Conflict("a category with this slug exists") from None
        self.invalidate_lists()
        return category

    def create_product(self, body: ProductIn) -> ProductOut:
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                product_id = product_queries.insert_product(
                    cur, sku=body.sku, name=body.name, description=body.description,
                    price=body.price, currency=body.currency, category=body.category,
                    stock=body.stock)
                product = product_queries.product(cur, product_id)
                assert product is not None  # inserted just above, same transaction
                # Every product change is an event, committed with it.
                outbox.record(cur, outbox.PRODUCT_UPDATED, product_id, encoder.encode(product))
        except product_queries.DuplicateSku:
            raise Conflict("a product with this sku exists") from None
        except category_queries.UnknownCategory:
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
                current = product_queries.product(cur, product_id, lock=True)
                if current is None:
                    raise NotFound("no such product")
                if if_match is not None and not _matches(if_match, encoder.encode(current)):
                    raise PreconditionFailed("the product changed since you read it")
                if changes:
                    product_queries.update_product(cur, product_id, changes)
                product = product_queries.product(cur, product_id)
                assert product is not None  # locked above, same transaction
                if changes:
                    outbox.record(cur, outbox.PRODUCT_UPDATED, product_id,
                                  encoder.encode(product))
        except product_queries.DuplicateSku:
            raise Conflict("a product with this sku exists") from None
        except category_queries.UnknownCategory:
            raise _unknown_category() from None
        self.invalidate_products([product_id])
        return product, encoder.encode(product)

    def delete_product(self, product_id: str) -> None:
        if not is_uuid(product_id):
            raise NotFound("no such product")
        with self._pool.transaction() as conn, conn.cursor() as cur:
            if not product_queries.delete_product(cur, product_id):
                raise NotFound("no such product")
            # The API answers 404 for it from now on: the event says so.
            outbox.record(cur, outbox.PRODUCT_UPDATED, product_id,
                          msgspec.json.encode({"id": product_id, "deleted": True}))
        self.invalidate_products([product_id])

    # -- invalidation (always after commit) -------------------------------------

    def invalidate_products(self, product_ids, *, lists: bool = True) -> None:
        """After a commit: drop the products' cached pages (and every list, if ``lists``).

        Returns once a round of invalidation that began after this call has
        finished (concurrent writers share rounds: app/coalescing.py) and,
        when that round lost an invalidation, every process has had the time
        to adopt the new epoch.
        """
        adopted = self._invalidation.submit([key("product", p) for p in product_ids], lists)
        if adopted:
            # Waited out here, not in the round: the next round's writers
            # must not have their deletes held back by this wait.
            gevent.sleep(max(0.0, adopted - time.monotonic()))

    def _invalidate(self, keys: list[str], lists: bool) -> float:
        """One round: returns when a lost invalidation's new epoch is adopted (or 0.0)."""
        # Before any key is dropped: a read that misses afterwards must not
        # be answered by a replica that has not replayed this commit.
        lost = self.replicas.wrote()
        if lists and not self._next_generation():
            lost.append(GENERATION_KEY)
        adopted = self._cache.invalidate(keys, lost=lost, wait=False)
        near_keys = keys + [GENERATION_KEY] if lists else keys
        if self._near is not None:
            # After memcached (and any epoch bump): fails every worker's near entries.
            self._near.bump(near_keys)
        if self._announcer is not None:
            # After memcached too: other nodes' reads after they hear it are
            # fresh. Before the answer: no later event in this process can
            # leave another node's entry trusted past the bound.
            adopted = max(adopted, self._announcer.announce(near_keys))
        return adopted

    def settle(self, timeout: float) -> bool:
        """Let the invalidation rounds in progress finish (at a worker's exit)."""
        return self._invalidation.settle(timeout)

    def invalidate_lists(self) -> None:
        self.invalidate_products([])

    def _next_generation(self) -> bool:
        """Move the lists to a new generation; False when that may not have happened."""
        # Only our incr or our add of a fresh generation proves it: one that
        # someone else holds may predate the commit (our incr may have timed
        # out unapplied), so the caller retires the epoch instead.
        return (self._cache.incr(GENERATION_KEY) is not None
                or bool(self._cache.add(GENERATION_KEY, _fresh_generation(), ttl=0)))

    def _generation(self) -> bytes | None:
        near = self._near
        if near is not None:
            value = near.get(GENERATION_KEY)
            if value is not None:
                self._metrics.incr("cache.generation.near_hit")
                replay.note(GENERATION_KEY, value, "generation")
                return value
            ticket = near.begin(GENERATION_KEY)  # before memcached is read
        value = self._cache.get(GENERATION_KEY)
        if value is None:
            value = self._new_generation()
        if value is not None and near is not None:
            near.put(GENERATION_KEY, value, ticket)
            replay.note(GENERATION_KEY, value, "generation")
        return value

    def _new_generation(self) -> bytes | None:
        fresh = _fresh_generation()
        added = self._cache.add(GENERATION_KEY, fresh, ttl=0)
        if added is None:
            return None
        return fresh if added else self._cache.get(GENERATION_KEY)


def _fresh_generation() -> bytes:
    # Random, not time-based: a clock (or another host's) can land inside the
    # range an older generation counted through while its list keys are still
    # cached. 62 bits leave incr room below 2**64.
    return str(secrets.randbits(62)).encode()


def _sort_value(product: ProductOut, field: str) -> str:
    value = getattr(product, field)
    return value.isoformat() if field == "created_at" else value


def _matches(if_match: list[str], body: bytes) -> bool:
    return "*" in if_match or etag(body) in if_match


def _unknown_category() -> ValidationFailed:
    return ValidationFailed("no category has this slug",
                            details=[{"field": "$.category", "message": "unknown category"}])
