"""The FastAPI peer: uvicorn (uvloop, httptools), asyncpg, aiomcache, PyJWT, orjson.

Peregrine's three read routes, written the way a FastAPI user would: async
handlers, an asyncpg pool, aiomcache read-through with the encoded body
cached under this peer's own keys, ORJSONResponse. Run by bench/compare.py::

    uvicorn app:app --loop uvloop --http httptools --workers 1 --no-access-log

Configuration: PEREGRINE_DATABASE_URL, PEREGRINE_MEMCACHED_SERVERS and
PEREGRINE_JWT_SECRET, the same database, cache and token secret as Peregrine.
"""

import os
from contextlib import asynccontextmanager

import aiomcache
import asyncpg
import catalog_sql as shared
import jwt
import orjson
from fastapi import FastAPI, Header, Request
from fastapi.responses import ORJSONResponse, Response

PRODUCT_SQL = shared.sql(shared.PRODUCT_SQL, "$")
CATEGORY_PAGE_SQL = shared.sql(shared.CATEGORY_PAGE_SQL, "$")
USER_SQL = shared.sql(shared.USER_SQL, "$")
SECRET = os.environ["PEREGRINE_JWT_SECRET"].encode()
POOL_SIZE = int(os.environ.get("PEER_DB_POOL_SIZE", "10"))


class JSONResponse(ORJSONResponse):
    # UTC datetimes as "...Z", as Peregrine's msgspec encoder writes them.
    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)


def encode(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


@asynccontextmanager
async def lifespan(app):
    host, port = shared.memcached_address(os.environ["PEREGRINE_MEMCACHED_SERVERS"])
    app.state.db = await asyncpg.create_pool(os.environ["PEREGRINE_DATABASE_URL"],
                                             min_size=POOL_SIZE, max_size=POOL_SIZE)
    app.state.cache = aiomcache.Client(host, port, pool_size=POOL_SIZE)
    yield
    await app.state.cache.close()
    await app.state.db.close()


app = FastAPI(lifespan=lifespan, default_response_class=JSONResponse,
              openapi_url=None, docs_url=None, redoc_url=None)


def error(status: int, code: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code}}, status_code=status)


def cached_json(body: bytes) -> Response:
    return Response(body, media_type="application/json", headers={"ETag": shared.etag(body)})


async def read_through(state, key: bytes, ttl: int, load):
    body = await state.cache.get(key)
    if body is None:
        body = await load()
        if body is not None:
            await state.cache.set(key, body, exptime=ttl)
    return body


@app.get("/v1/products/{product_id}")
async def product(product_id: str, request: Request):
    if not shared.is_uuid(product_id):
        return error(404, "not_found")
    db = request.app.state.db

    async def load():
        row = await db.fetchrow(PRODUCT_SQL, product_id)
        return None if row is None else encode(shared.product(row))

    body = await read_through(request.app.state, b"peer-fastapi:product:" + product_id.encode(),
                              shared.DETAIL_TTL, load)
    return error(404, "not_found") if body is None else cached_json(body)


@app.get("/v1/products")
async def products(category: str, request: Request, limit: int = 20):
    db = request.app.state.db

    async def load():
        rows = await db.fetch(CATEGORY_PAGE_SQL, category, limit + 1)
        return encode(shared.page(rows, limit))

    key = f"peer-fastapi:products:{category}:{limit}".encode()
    return cached_json(await read_through(request.app.state, key, shared.LIST_TTL, load))


@app.get("/v1/users/me")
async def me(request: Request, authorization: str | None = Header(default=None)):
    if not authorization or not authorization.startswith("Bearer "):
        return error(401, "unauthorized")
    try:
        token = jwt.api_jwt.decode_complete(
            authorization[7:], SECRET, algorithms=["HS256"], audience=shared.AUDIENCE,
            issuer=shared.ISSUER, leeway=shared.LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub"]})
    except jwt.InvalidTokenError:
        return error(401, "unauthorized")
    if token["header"].get("typ") != shared.TOKEN_TYPE:
        return error(401, "unauthorized")
    row = await request.app.state.db.fetchrow(USER_SQL, token["payload"]["sub"])
    # A response, not a dict: FastAPI would run jsonable_encoder over a dict first.
    return error(404, "not_found") if row is None else JSONResponse(shared.user(row))
