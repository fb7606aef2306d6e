"""The Granian peer: Granian's WSGI server, Falcon, pymemcache, psycopg2, PyJWT.

Peregrine's three read routes on the synchronous stack a Falcon user runs
under Granian: one worker process whose blocking threads share a psycopg2
``ThreadedConnectionPool`` and a pymemcache ``PooledClient`` (read-through,
the encoded body cached under this peer's own keys). Run by
bench/compare.py::

    granian --interface wsgi --workers 1 --blocking-threads N --no-access-log app:app

Configuration: PEREGRINE_DATABASE_URL, PEREGRINE_MEMCACHED_SERVERS and
PEREGRINE_JWT_SECRET; PEER_THREADS sizes both pools (one connection per thread).
"""

import os
from contextlib import contextmanager

import catalog_sql as shared
import falcon
import jwt
import msgspec
from psycopg2.pool import ThreadedConnectionPool
from pymemcache.client.base import PooledClient

PRODUCT_SQL = shared.sql(shared.PRODUCT_SQL, "%s")
CATEGORY_PAGE_SQL = shared.sql(shared.CATEGORY_PAGE_SQL, "%s")
USER_SQL = shared.sql(shared.USER_SQL, "%s")
SECRET = os.environ["PEREGRINE_JWT_SECRET"].encode()
THREADS = int(os.environ.get("PEER_THREADS", "16"))

encode = msgspec.json.Encoder().encode
db = ThreadedConnectionPool(1, THREADS, os.environ["PEREGRINE_DATABASE_URL"],
                            options="-c timezone=UTC")
cache = PooledClient(shared.memcached_address(os.environ["PEREGRINE_MEMCACHED_SERVERS"]),
                     max_pool_size=THREADS, connect_timeout=1, timeout=1)


@contextmanager
def cursor():
    conn = db.getconn()
    try:
        with conn, conn.cursor() as cur:  # commit (or roll back) the read's transaction
            yield cur
    finally:
        db.putconn(conn)


def read_through(key: str, ttl: int, load):
    body = cache.get(key)
    if body is None:
        body = load()
        if body is not None:
            cache.set(key, body, expire=ttl)
    return body


def send_cached(resp, body: bytes) -> None:
    resp.data = body
    resp.content_type = falcon.MEDIA_JSON
    resp.set_header("ETag", shared.etag(body))


class Product:
    def on_get(self, req, resp, product_id):
        if not shared.is_uuid(product_id):
            raise falcon.HTTPNotFound()

        def load():
            with cursor() as cur:
                cur.execute(PRODUCT_SQL, (product_id,))
                row = cur.fetchone()
            return None if row is None else encode(shared.product(row))

        body = read_through(f"peer-granian:product:{product_id}", shared.DETAIL_TTL, load)
        if body is None:
            raise falcon.HTTPNotFound()
        send_cached(resp, body)


class Products:
    def on_get(self, req, resp):
        category = req.get_param("category", required=True)
        limit = req.get_param_as_int("limit", default=20, min_value=1, max_value=100)

        def load():
            with cursor() as cur:
                cur.execute(CATEGORY_PAGE_SQL, (category, limit + 1))
                rows = cur.fetchall()
            return encode(shared.page(rows, limit))

        send_cached(resp, read_through(f"peer-granian:products:{category}:{limit}",
                                       shared.LIST_TTL, load))


class Me:
    def on_get(self, req, resp):
        authorization = req.get_header("Authorization") or ""
        if not authorization.startswith("Bearer "):
            raise falcon.HTTPUnauthorized()
        try:
            token = jwt.api_jwt.decode_complete(
                authorization[7:], SECRET, algorithms=["HS256"], audience=shared.AUDIENCE,
                issuer=shared.ISSUER, leeway=shared.LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub"]})
        except jwt.InvalidTokenError:
            raise falcon.HTTPUnauthorized() from None
        if token["header"].get("typ") != shared.TOKEN_TYPE:
            raise falcon.HTTPUnauthorized()
        with cursor() as cur:
            cur.execute(USER_SQL, (token["payload"]["sub"],))
            row = cur.fetchone()
        if row is None:
            raise falcon.HTTPNotFound()
        resp.data = encode(shared.user(row))
        resp.content_type = falcon.MEDIA_JSON


app = falcon.App()
app.add_route("/v1/products/{product_id}", Product())
app.add_route("/v1/products", Products())
app.add_route("/v1/users/me", Me())
