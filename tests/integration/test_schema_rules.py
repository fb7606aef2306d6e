"""The database's own rules on catalog and order rows hold, whatever writes them.

The API validates every body before it reaches SQL; these rules are the last
line behind it (a bug, a manual fix, another tool). Most of them are domains
(app/migrations/0011_checks_as_domains.sql), two are table constraints: each
write that breaks one must fail with check_violation, name the rule, and
change nothing.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg2
import psycopg2.errors
import pytest

from tests.support.api import new_user
from tests.support.catalog import create_product

# (rule, statement breaking it; %(product)s, %(user)s and %(order)s are filled in)
BROKEN = [
    ("products_stock_check", "UPDATE products SET stock = stock - 11 WHERE id = %(product)s"),
    ("products_stock_check", "UPDATE products SET stock = -1 WHERE id = %(product)s"),
    ("products_price_check", "UPDATE products SET price = -0.01 WHERE id = %(product)s"),
    ("products_currency_check", "UPDATE products SET currency = 'usd' WHERE id = %(product)s"),
    ("products_sku_check", "UPDATE products SET sku = '' WHERE id = %(product)s"),
    ("products_sku_check", "UPDATE products SET sku = repeat('s', 65) WHERE id = %(product)s"),
    ("products_name_check", "UPDATE products SET name = '' WHERE id = %(product)s"),
    ("products_description_check",
     "UPDATE products SET description = repeat('d', 5001) WHERE id = %(product)s"),
    ("orders_status_check", "UPDATE orders SET status = 'shipped' WHERE id = %(order)s"),
    ("orders_total_check", "UPDATE orders SET total = -1 WHERE id = %(order)s"),
    ("order_items_line_check",
     "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price)"
     " VALUES (%(order)s, -1, %(product)s, 1, 1)"),
    ("order_items_quantity_check",
     "UPDATE order_items SET quantity = 0 WHERE order_id = %(order)s"),
    ("order_items_quantity_check",
     "UPDATE order_items SET quantity = 101 WHERE order_id = %(order)s"),
    ("order_items_unit_price_check",
     "UPDATE order_items SET unit_price = -5 WHERE order_id = %(order)s"),
    ("idempotency_keys_key_check",
     "INSERT INTO idempotency_keys (user_id, key, request_hash, response_status, response_body)"
     " VALUES (%(user)s, '', '', 0, '')"),
    ("idempotency_keys_key_check",
     "UPDATE idempotency_keys SET key = repeat('k', 256) WHERE user_id = %(user)s"),
    ("events_type_check",
     "INSERT INTO events (type, aggregate_id, data) VALUES ('order.shipped', %(order)s, '{}')"),
]

SNAPSHOT = ("SELECT (SELECT row(p.*)::text FROM products p WHERE p.id = %(product)s),"
            " (SELECT row(o.*)::text FROM orders o WHERE o.id = %(order)s),"
            " (SELECT array_agg(row(i.*)::text) FROM order_items i WHERE i.order_id = %(order)s),"
            " (SELECT count(*) FROM idempotency_keys), (SELECT count(*) FROM events)")


@pytest.fixture
def rows(client, admin, db):
    product = create_product(client, admin, stock=10)
    user = new_user(client)
    placed = client.simulate_post("/v1/orders", headers=dict(user["headers"], **{
        "Idempotency-Key": "rules-1"}), json={
        "items": [{"product_id": product["id"], "quantity": 1}],
        "shipping_address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "1",
                             "country": "US"}})
    assert placed.status_code == 201, placed.text
    return {"product": product["id"], "user": user["id"], "order": placed.json["id"]}


@pytest.mark.parametrize(("rule", "statement"), BROKEN,
                         ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(BROKEN)])
def test_a_write_that_breaks_a_rule_fails_naming_it_and_changes_nothing(db, rows, rule,
                                                                         statement):
    with db.cursor() as cur:
        cur.execute(SNAPSHOT, rows)
        before = cur.fetchone()
        with pytest.raises(psycopg2.errors.CheckViolation) as broken:
            cur.execute(statement, rows)
        assert broken.value.diag.constraint_name == rule
        cur.execute(SNAPSHOT, rows)
        assert cur.fetchone() == before


def test_the_rules_let_the_edges_through(db, rows):
    """The bounds themselves are allowed: no rule is stricter than it was."""
    with db.cursor() as cur:
        cur.execute("UPDATE products SET stock = 0, price = 0, currency = 'EUR',"
                    " sku = repeat('s', 64), name = repeat('n', 200),"
                    " description = repeat('d', 5000) WHERE id = %(product)s", rows)
        cur.execute("UPDATE order_items SET quantity = 100, unit_price = 0"
                    " WHERE order_id = %(order)s", rows)
        cur.execute("UPDATE orders SET status = 'cancelled', total = 0 WHERE id = %(order)s", rows)
        cur.execute("UPDATE idempotency_keys SET key = repeat('k', 255)"
                    " WHERE user_id = %(user)s", rows)
        cur.execute("INSERT INTO events (type, aggregate_id, data)"
                    " VALUES ('product.updated', %(product)s, '{}')", rows)
        cur.execute("SELECT stock, price::text, currency FROM products WHERE id = %(product)s",
                    rows)
        assert cur.fetchone() == (0, "0.00", "EUR")


def test_values_read_back_as_their_base_types(db, rows):
    """psycopg2 picks its casts by the type Postgres reports: a domain's base type."""
    with db.cursor() as cur:
        cur.execute("SELECT p.stock, p.price, p.currency, p.sku, o.total, o.status, i.line,"
                    " i.quantity, i.unit_price FROM products p, orders o, order_items i"
                    " WHERE p.id = %(product)s AND o.id = %(order)s AND i.order_id = o.id", rows)
        values = cur.fetchone()
    assert [type(v) for v in values] == [int, Decimal, str, str, Decimal, str, int, int, Decimal]
    assert values[0] == 9 and values[6] == 0 and values[7] == 1
