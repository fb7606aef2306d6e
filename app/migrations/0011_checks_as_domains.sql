-- The CHECK constraints an order's writes meet, as domains.
--
-- PERF: PostgreSQL rebuilds a table's CHECK constraints for every statement
-- that writes it: ExecConstraints parses each one from its stored text
-- (stringToNode) and plans it again, even when the statement changes one
-- column. Placing an order met fourteen of them (six on the products row
-- whose stock it takes, two on the order, three on its line, one on its
-- event, one on its Idempotency-Key record, written twice): a quarter of
-- the database's instructions per order. A domain's constraints are
-- compiled once per session and kept in its type cache, and only a column
-- that is assigned is checked. 1.62M -> 1.31M PostgreSQL instructions per
-- place_order() call (callgrind, single-user backend; bench/README.md,
-- "Orders: CHECK constraints as domains").
--
-- Every rule and its name stay as they were: a violation is still SQLSTATE
-- 23514 (check_violation) naming the same constraint; the message says
-- "value for domain ..." instead of "new row for relation ...".
--
-- products.name and products.description keep their table constraints: the
-- generated search column depends on them, and a column a generated column
-- uses cannot change type without rebuilding that column and its index.
--
-- No table is rewritten. Each column first moves to a domain without a
-- constraint, which is binary-compatible with its type, and only then does
-- each domain get its constraint, which PostgreSQL checks against the rows
-- there are (a scan, as adding a CHECK constraint does). The indexes stay as
-- they are, except the two partial ones on products.sku and products.price,
-- which PostgreSQL builds again. The whole file is one transaction: the five
-- tables are locked until it commits.

CREATE DOMAIN product_sku AS text;
CREATE DOMAIN money_amount AS numeric(12, 2);
CREATE DOMAIN currency_code AS char(3);
CREATE DOMAIN stock_count AS integer;
CREATE DOMAIN order_status AS text;
CREATE DOMAIN order_total AS numeric(14, 2);
CREATE DOMAIN order_line AS smallint;
CREATE DOMAIN line_quantity AS integer;
CREATE DOMAIN idempotency_key AS text;
CREATE DOMAIN event_type AS text;

ALTER TABLE products
    DROP CONSTRAINT products_sku_check,
    DROP CONSTRAINT products_price_check,
    DROP CONSTRAINT products_currency_check,
    DROP CONSTRAINT products_stock_check,
    ALTER COLUMN sku TYPE product_sku,
    ALTER COLUMN price TYPE money_amount,
    ALTER COLUMN currency TYPE currency_code,
    ALTER COLUMN stock TYPE stock_count;
ALTER TABLE orders
    DROP CONSTRAINT orders_status_check,
    DROP CONSTRAINT orders_total_check,
    ALTER COLUMN status TYPE order_status,
    ALTER COLUMN total TYPE order_total;
ALTER TABLE order_items
    DROP CONSTRAINT order_items_line_check,
    DROP CONSTRAINT order_items_quantity_check,
    DROP CONSTRAINT order_items_unit_price_check,
    ALTER COLUMN line TYPE order_line,
    ALTER COLUMN quantity TYPE line_quantity,
    ALTER COLUMN unit_price TYPE money_amount;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_key_check,
    ALTER COLUMN key TYPE idempotency_key;
ALTER TABLE events
    DROP CONSTRAINT events_type_check,
    ALTER COLUMN type TYPE event_type;

-- The same rules under the same names (a price and a line's unit price share
-- one domain, so that rule answers to products_price_check).
ALTER DOMAIN product_sku ADD CONSTRAINT products_sku_check
    CHECK (length(VALUE) BETWEEN 1 AND 64);
ALTER DOMAIN money_amount ADD CONSTRAINT products_price_check CHECK (VALUE >= 0);
ALTER DOMAIN currency_code ADD CONSTRAINT products_currency_check
    CHECK (VALUE ~ '^[A-Z]{3}$');
ALTER DOMAIN stock_count ADD CONSTRAINT products_stock_check CHECK (VALUE >= 0);
ALTER DOMAIN order_status ADD CONSTRAINT orders_status_check
    CHECK (VALUE IN ('placed', 'cancelled'));
ALTER DOMAIN order_total ADD CONSTRAINT orders_total_check CHECK (VALUE >= 0);
ALTER DOMAIN order_line ADD CONSTRAINT order_items_line_check CHECK (VALUE >= 0);
ALTER DOMAIN line_quantity ADD CONSTRAINT order_items_quantity_check
    CHECK (VALUE BETWEEN 1 AND 100);
ALTER DOMAIN idempotency_key ADD CONSTRAINT idempotency_keys_key_check
    CHECK (length(VALUE) BETWEEN 1 AND 255);
ALTER DOMAIN event_type ADD CONSTRAINT events_type_check
    CHECK (VALUE IN ('order.placed', 'order.cancelled', 'product.updated'));
