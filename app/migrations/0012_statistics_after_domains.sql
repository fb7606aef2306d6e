-- The planner's statistics for the columns 0011_checks_as_domains.sql moved
-- to domains: changing a column's type drops them, even when no row is
-- rewritten, and autovacuum would not gather them again until enough rows
-- changed. Until then price ranges, stock filters and order statuses are
-- estimated from defaults. A migration of its own, so that it runs after
-- 0011 has committed: ANALYZE reads a sample of each table under a lock that
-- lets reads and writes go on.
ANALYZE products (sku, price, currency, stock);
ANALYZE orders (status, total);
ANALYZE order_items (line, quantity, unit_price);
ANALYZE idempotency_keys (key);
ANALYZE events (type);
