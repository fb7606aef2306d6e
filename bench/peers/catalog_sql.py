"""What both peers ask Postgres, and how they shape the answer.

The statements are Peregrine's (app/queries/catalog.py, app/queries/users.py)
and the bodies have its field order (app/schemas/catalog.py, app/schemas/auth.py),
so every server in ``bench/compare.py`` does the same work and sends the same
JSON. Placeholders are ``{}`` slots: asyncpg wants ``$1``, psycopg2 ``%s``.
Standard library only: each peer imports this from its own virtualenv.
"""

import base64
import hashlib
import json
import re

ISSUER = "peregrine"
AUDIENCE = "peregrine:access"
TOKEN_TYPE = "at+jwt"
LEEWAY_SECONDS = 30

DETAIL_TTL = 60
LIST_TTL = 30
PRODUCT_FIELDS = ("id", "sku", "name", "description", "price", "currency", "category",
                  "stock", "created_at", "updated_at")
USER_FIELDS = ("id", "email", "name", "role", "created_at")

_PRODUCT = ("p.id::text, p.sku, p.name, p.description, p.price::text, p.currency, c.slug,"
            " p.stock, p.created_at, p.updated_at")
_FROM = "FROM products p LEFT JOIN categories c ON c.id = p.category_id"

PRODUCT_SQL = f"SELECT {_PRODUCT} {_FROM} WHERE p.id = {{}} AND p.deleted_at IS NULL"
# The first page of a category, newest first: limit + 1 rows tell whether a next page exists.
CATEGORY_PAGE_SQL = (
    f"SELECT {_PRODUCT} {_FROM} WHERE p.deleted_at IS NULL"
    " AND p.category_id = (SELECT id FROM categories WHERE slug = {})"
    " ORDER BY p.created_at DESC, p.id DESC LIMIT {}")
USER_SQL = "SELECT id::text, email, name, role, created_at FROM users WHERE id = {}"

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def sql(statement: str, placeholder: str) -> str:
    """``statement`` with its slots numbered (``$``) or as ``%s``."""
    if placeholder == "$":
        return statement.format(*(f"${i}" for i in range(1, statement.count("{}") + 1)))
    return statement.format(*(["%s"] * statement.count("{}")))


def is_uuid(text: str) -> bool:
    return _UUID.match(text) is not None


def product(row) -> dict:
    return dict(zip(PRODUCT_FIELDS, row, strict=True))


def user(row) -> dict:
    return dict(zip(USER_FIELDS, row, strict=True))


def page(rows, limit: int) -> dict:
    """Peregrine's ProductPage: the items and the keyset cursor of the next page."""
    items = [product(row) for row in rows[:limit]]
    cursor = None
    if len(rows) > limit:
        last = items[-1]
        raw = json.dumps([last["created_at"].isoformat(), last["id"]], separators=(",", ":"))
        cursor = base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()
    return {"items": items, "next_cursor": cursor}


def etag(body: bytes) -> str:
    """The strong ETag Peregrine sends with a cached body (app/catalog.py)."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def memcached_address(servers: str) -> tuple[str, int]:
    """The first of ``PEREGRINE_MEMCACHED_SERVERS`` (``host:port,...``)."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    return host, int(port)
