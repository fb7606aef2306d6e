"""The categories table."""

from __future__ import annotations

import psycopg2.errors

from app.schemas.catalog import CategoryOut


class DuplicateSlug(Exception):
    pass


class UnknownCategory(Exception):
    pass


def categories(cur) -> list[CategoryOut]:
    cur.execute("SELECT id::text, name, slug FROM categories ORDER BY name, id")
    return [CategoryOut(id=r[0], name=r[1], slug=r[2]) for r in cur.fetchall()]


def insert_category(cur, name: str, slug: str) -> CategoryOut:
    try:
        cur.execute("INSERT INTO categories (name, slug) VALUES (%s, %s) RETURNING id::text",
                    (name, slug))
    except psycopg2.errors.UniqueViolation:
        raise DuplicateSlug(slug) from None
    return CategoryOut(id=cur.fetchone()[0], name=name, slug=slug)


def category_id(cur, slug: str | None) -> str | None:
    if slug is None:
        return None
    cur.execute("SELECT id FROM categories WHERE slug = %s", (slug,))
    row = cur.fetchone()
    if row is None:
        raise UnknownCategory(slug)
    return row[0]
