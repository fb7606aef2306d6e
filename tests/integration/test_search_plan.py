"""Product search on a 100k catalog uses the trigram index, not a scan."""

from app.queries.products import explain_search


def test_search_on_a_hundred_thousand_products_uses_the_trigram_index(db):
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO products (sku, name, description, price, stock)"
            " SELECT 'P-' || n, 'Product ' || md5(n::text), 'Model ' || n, n % 1000, n % 7"
            " FROM generate_series(1, 100000) AS n")
        # Every row in the sample and a 10,000-bound histogram: a pattern
        # matching one product is then estimated at ~1/10,000 whatever rows
        # ANALYZE picks. With the default target a run now and then estimated
        # 1 % (1,010 rows: one of the histogram's 101 bounds matched) and
        # planned a backward scan of products_created_idx instead.
        cur.execute("ALTER TABLE products ALTER COLUMN search SET STATISTICS 10000")
        try:
            cur.execute("ANALYZE products")
        finally:
            cur.execute("ALTER TABLE products ALTER COLUMN search SET STATISTICS -1")
        cur.execute("SELECT count(*) FROM products")
        assert cur.fetchone()[0] == 100_000
        plan = explain_search(cur, q="model 48213", sort="-created_at", limit=20)
    assert "products_search_trgm_idx" in plan, plan
    assert "Seq Scan on products" not in plan, plan
