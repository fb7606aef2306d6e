-- The CHECK constraints an order's writes meet, as domains.
--
-- PERF: PostgreSQL rebuilds a table's CHECK constraints for every statement
-- that writes it: ExecConstraints parses each one from its stored text
-- (stringToNode) and plans it again, even when the statement changes one
-- column. Placing an order met fourteen of them (six on the products row
-- whose stock it takes, two on the order, three on its line, one on its
-- event, one on its Idempotency-Key record, written twice). A domain's
-- constraints are compiled once per session and kept in its type cache, and
-- only a column that is assigned is checked. 1.57M -> 1.27M PostgreSQL
-- instructions per place_order() call, -19 % (bench/postgres_instructions.py;
-- bench/README.md, "Orders: CHECK constraints as domains").
--
-- Every rule keeps its expression and its name: a violation is still SQLSTATE
-- 23514 (check_violation) naming the same constraint, with the message
-- "value for domain ... violates check constraint ..." (and no table or
-- column in its fields) instead of "new row for relation ...".
-- products.name and products.description keep their table constraints: the
-- generated search column depends on them, and a column a generated column
-- uses cannot change type without rebuilding that column and its index.
--
-- What moving to domains changes for later work:
-- * A rule now lives on its domain: ALTER DOMAIN, not ALTER TABLE. To allow
--   a new event type while the service runs, drop the domain's constraint and
--   add the new one NOT VALID in one migration (the rows there are passed the
--   old, narrower rule). ALTER DOMAIN ... VALIDATE CONSTRAINT, or adding one
--   without NOT VALID, scans every table using the domain under a SHARE lock
--   that stops writes until it is done.
-- * An array built from these columns has the domain's array type, which
--   psycopg2 does not parse: cast the column to its base type first
--   (array_agg(quantity::integer)). Single values come back as before, since
--   PostgreSQL describes a domain column by its base type.
-- * A plan a client prepared on the server (not psycopg2, which prepares
--   nothing) over these columns fails once with "cached plan must not change
--   result type" and is then made again.
--
-- The running service keeps placing orders while this runs (migrations run
-- before the new release goes live), so the locks are held briefly:
-- * no table is rewritten: each column first moves to a domain without a
--   constraint, which is binary-compatible with its type. The indexes stay,
--   except the two partial ones on products.sku and products.price, which
--   PostgreSQL builds again (about 0.5 s for 300k products);
-- * the domains' constraints are added NOT VALID, so nothing is scanned: the
--   rows there are met the very same rules, as table constraints, until this
--   transaction dropped them, and no other transaction could write between
--   (ALTER TABLE holds each table exclusively until the commit). New values
--   are checked all the same;
-- * should the service hold a lock this needs, app/manage/migrate.py gives up
--   within 0.5 s and tries again, instead of making requests queue behind it.
-- Dropping the old column types also drops their statistics:
-- 0012_statistics_after_domains.sql gathers them again, after the commit.
-- A streaming replica replays these locks too: catalog reads there wait for
-- the commit as they do on the primary.

CREATE DOMAIN product_sku AS text;
CREATE DOMAIN product_price AS numeric(12, 2);
CREATE DOMAIN currency_code AS char(3);
CREATE DOMAIN stock_count AS integer;
CREATE DOMAIN order_status_name AS text;
CREATE DOMAIN order_total_amount AS numeric(14, 2);
CREATE DOMAIN order_line_number AS smallint;
CREATE DOMAIN line_quantity AS integer;
CREATE DOMAIN line_unit_price AS numeric(12, 2);
CREATE DOMAIN idempotency_key_text AS text;
CREATE DOMAIN event_type_name AS text;

ALTER TABLE products
    DROP CONSTRAINT products_sku_check,
    DROP CONSTRAINT products_price_check,
    DROP CONSTRAINT products_currency_check,
    DROP CONSTRAINT products_stock_check,
    ALTER COLUMN sku TYPE product_sku,
    ALTER COLUMN price TYPE product_price,
    ALTER COLUMN currency TYPE currency_code,
    ALTER COLUMN stock TYPE stock_count;
ALTER TABLE orders
    DROP CONSTRAINT orders_status_check,
    DROP CONSTRAINT orders_total_check,
    ALTER COLUMN status TYPE order_status_name,
    ALTER COLUMN total TYPE order_total_amount;
ALTER TABLE order_items
    DROP CONSTRAINT order_items_line_check,
    DROP CONSTRAINT order_items_quantity_check,
    DROP CONSTRAINT order_items_unit_price_check,
    ALTER COLUMN line TYPE order_line_number,
    ALTER COLUMN quantity TYPE line_quantity,
    ALTER COLUMN unit_price TYPE line_unit_price;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_key_check,
    ALTER COLUMN key TYPE idempotency_key_text;
ALTER TABLE events
    DROP CONSTRAINT events_type_check,
    ALTER COLUMN type TYPE event_type_name;

ALTER DOMAIN product_sku ADD CONSTRAINT products_sku_check
    CHECK (length(VALUE) BETWEEN 1 AND 64) NOT VALID;
ALTER DOMAIN product_price ADD CONSTRAINT products_price_check
    CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN currency_code ADD CONSTRAINT products_currency_check
    CHECK (VALUE ~ '^[A-Z]{3}$') NOT VALID;
ALTER DOMAIN stock_count ADD CONSTRAINT products_stock_check
    CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN order_status_name ADD CONSTRAINT orders_status_check
    CHECK (VALUE IN ('placed', 'cancelled')) NOT VALID;
ALTER DOMAIN order_total_amount ADD CONSTRAINT orders_total_check
    CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN order_line_number ADD CONSTRAINT order_items_line_check
    CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN line_quantity ADD CONSTRAINT order_items_quantity_check
    CHECK (VALUE BETWEEN 1 AND 100) NOT VALID;
ALTER DOMAIN line_unit_price ADD CONSTRAINT order_items_unit_price_check
    CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN idempotency_key_text ADD CONSTRAINT idempotency_keys_key_check
    CHECK (length(VALUE) BETWEEN 1 AND 255) NOT VALID;
ALTER DOMAIN event_type_name ADD CONSTRAINT events_type_check
    CHECK (VALUE IN ('order.placed', 'order.cancelled', 'product.updated')) NOT VALID;
