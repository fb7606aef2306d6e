"""The products table (read with the slug of its category)."""

from __future__ import annotations

from decimal import Decimal

import psycopg2.errors

from app.queries import categories
from app.schemas.catalog import ProductOut

_PRODUCT = (
    "p.id::text, p.sku, p.name, p.description, p.price::text, p.currency, c.slug,"
    " p.stock, p.created_at, p.updated_at"
)
_FROM = "FROM products p LEFT JOIN categories c ON c.id = p.category_id"

# Sort keys the contract allows -> column; never interpolate anything else.
SORT_COLUMNS = {"name": "p.name", "price": "p.price", "created_at": "p.created_at"}


class DuplicateSku(Exception):
    pass


def _product(row) -> ProductOut:
    return ProductOut(id=row[0], sku=row[1], name=row[2], description=row[3], price=row[4],
                      currency=row[5], category=row[6], stock=row[7], created_at=row[8],
                      updated_at=row[9])


def product(cur, product_id: str, *, lock: bool = False) -> ProductOut | None:
    cur.execute(
        f"SELECT {_PRODUCT} {_FROM} WHERE p.id = %s AND p.deleted_at IS NULL"
        + (" FOR UPDATE OF p" if lock else ""),
        (product_id,),
    )
    row = cur.fetchone()
    return _product(row) if row else None


def insert_product(cur, *, sku, name, description, price, currency, category, stock) -> str:
    category_id = categories.category_id(cur, category)
    try:
        cur.execute(
            "INSERT INTO products (sku, name, description, price, currency, category_id, stock)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id::text",
            (sku, name, description, Decimal(price), currency, category_id, stock),
        )
    except psycopg2.errors.UniqueViolation:
        raise DuplicateSku(sku) from None
    return cur.fetchone()[0]


def update_product(cur, product_id: str, changes: dict) -> None:
    """Apply ``changes`` (column -> value; ``category`` is a slug) to a live product."""
    assignments, values = [], []
    for column, value in changes.items():
        if column == "category":
            column, value = "category_id", categories.category_id(cur, value)
        elif column == "price":
            value = Decimal(value)
        assignments.append(f"{column} = %s")
        values.append(value)
    assignments.append("updated_at = now()")
    try:
        cur.execute(
            f"UPDATE products SET {', '.join(assignments)}"
            " WHERE id = %s AND deleted_at IS NULL",
            (*values, product_id),
        )
    except psycopg2.errors.UniqueViolation:
        raise DuplicateSku(changes.get("sku")) from None


def delete_product(cur, product_id: str) -> bool:
    cur.execute(
        "UPDATE products SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL",
        (product_id,),
    )
    return cur.rowcount == 1


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(cur, **filters) -> list[ProductOut]:
    """One page of live products (``limit + 1`` rows) matching the filters."""
    cur.execute(*search_sql(**filters))
    return [_product(row) for row in cur.fetchall()]


def explain_search(cur, **filters) -> str:
    """The plan of :func:`search` (for tests and operators)."""
    sql, values = search_sql(**filters)
    cur.execute("EXPLAIN " + sql, values)
    return "\n".join(row[0] for row in cur.fetchall())


def search_sql(*, category=None, q=None, min_price=None, max_price=None, in_stock=None,
               sort="-created_at", after=None, limit=20) -> tuple[str, tuple]:
    """The SQL and parameters of a product search.

    Keyset pagination: ``after`` is the (sort value, id) of the last row seen,
    and each sort has a matching (column, id) index.
    """
    descending = sort.startswith("-")
    column = SORT_COLUMNS[sort.lstrip("-")]
    where, values = ["p.deleted_at IS NULL"], []
    if category is not None:
        where.append("p.category_id = (SELECT id FROM categories WHERE slug = %s)")
        values.append(category)
    if q is not None:
        # Trigram GIN index on p.search (lower(name || ' ' || description)).
        where.append("p.search LIKE %s")
        values.append(_like_pattern(q))
    if min_price is not None:
        where.append("p.price >= %s")
        values.append(Decimal(min_price))
    if max_price is not None:
        where.append("p.price <= %s")
        values.append(Decimal(max_price))
    if in_stock is not None:
        where.append("p.stock > 0" if in_stock else "p.stock = 0")
    if after is not None:
        where.append(f"({column}, p.id) {'<' if descending else '>'} (%s, %s)")
        values += [after[0], after[1]]
    direction = "DESC" if descending else "ASC"
    sql = (f"SELECT {_PRODUCT} {_FROM} WHERE {' AND '.join(where)}"
           f" ORDER BY {column} {direction}, p.id {direction} LIMIT %s")
    return sql, (*values, limit + 1)
