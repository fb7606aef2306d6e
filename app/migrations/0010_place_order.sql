-- Placing an order in one round trip.
--
-- Under gevent every statement a request sends is a network round trip and
-- a switch through the hub; placing one order took eight (BEGIN, the
-- Idempotency-Key claim, one stock update per line, the order, its lines,
-- the event, the key's response, COMMIT). One call of this function does the
-- same work in one statement, which in autocommit mode is one transaction:
-- everything commits together or not at all, as before.
--
-- The guarantees are those of app/orders.py:
-- * stock is taken by one conditional UPDATE per line (stock >= quantity),
--   so it never goes below zero; lines are locked in product-id order, so
--   two orders never wait on each other in opposite orders;
-- * a refused order raises, so nothing it touched is kept (the codes below
--   tell the caller why; their DETAIL lists the product ids, comma-separated,
--   in lock order);
-- * the response body is built here, byte for byte as msgspec encodes
--   app.schemas.orders.OrderOut, so the event (record_event) and the
--   Idempotency-Key record hold exactly what the client receives. Every value
--   spliced in is a UUID, a number or a currency code, none of which needs
--   JSON escaping, except the address, which the caller passes already
--   encoded.

-- A timestamp as msgspec encodes the datetime psycopg2 reads back: RFC 3339,
-- microseconds only when not zero, "Z" for UTC, else the session time zone's
-- offset.
CREATE FUNCTION json_timestamp(at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN to_char(at, 'US') = '000000' THEN '' ELSE '.' || to_char(at, 'US') END
        || CASE WHEN extract(timezone FROM at) = 0 THEN 'Z' ELSE to_char(at, 'TZH:TZM') END
$$;

-- place_order() returns the response body, or NULL when the Idempotency-Key
-- is already taken (then nothing was written and the caller replays the
-- stored answer).
-- Errors raised on purpose:
--   PO409  out of stock      (DETAIL: the products short of stock)
--   PO422  unknown products  (DETAIL: the products that do not exist)
--   PO423  mixed currencies
-- A vanished buyer fails its foreign key (23503), as with separate statements.
CREATE FUNCTION place_order(buyer text, idempotency_key text, body_hash bytea,
                            line_products text[], line_quantities integer[],
                            address_json text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    item record;
    line_price text;
    line_currency text;
    order_currency text;
    mixed boolean := false;
    prices text[] := ARRAY[]::text[];
    short text[] := ARRAY[]::text[];
    unknown text[];
    order_total numeric;
    placed_id uuid;
    placed_at timestamptz;
    items_json text;
    response text;
BEGIN
    IF idempotency_key IS NOT NULL THEN
        -- A concurrent request with the same key waits here until the first
        -- commits (then this one finds the key taken) or rolls back.
        INSERT INTO idempotency_keys (user_id, key, request_hash, response_status, response_body)
            VALUES (buyer::uuid, idempotency_key, body_hash, 0, '')
            ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;

    FOR item IN
        SELECT l.product_id, l.quantity, l.line_no
        FROM unnest(line_products, line_quantities) WITH ORDINALITY
             AS l(product_id, quantity, line_no)
        ORDER BY l.product_id::uuid
    LOOP
        UPDATE products SET stock = stock - item.quantity
            WHERE id = item.product_id::uuid AND deleted_at IS NULL
              AND stock >= item.quantity
            RETURNING price::text, currency INTO line_price, line_currency;
        IF NOT FOUND THEN
            short := short || item.product_id;
        ELSE
            prices[item.line_no] := line_price;
            IF order_currency IS NULL THEN
                order_currency := line_currency;
            ELSIF order_currency <> line_currency THEN
                mixed := true;
            END IF;
        END IF;
    END LOOP;

    IF cardinality(short) > 0 THEN
        unknown := ARRAY(
            SELECT s.product_id FROM unnest(short) WITH ORDINALITY AS s(product_id, line_no)
            WHERE NOT EXISTS (SELECT 1 FROM products p
                              WHERE p.id = s.product_id::uuid AND p.deleted_at IS NULL)
            ORDER BY s.line_no);
        IF cardinality(unknown) > 0 THEN
            RAISE EXCEPTION 'some products do not exist'
                USING ERRCODE = 'PO422', DETAIL = array_to_string(unknown, ',');
        END IF;
        RAISE EXCEPTION 'not enough stock'
            USING ERRCODE = 'PO409', DETAIL = array_to_string(short, ',');
    END IF;
    IF mixed THEN
        RAISE EXCEPTION 'all products in an order must share one currency'
            USING ERRCODE = 'PO423';
    END IF;

    SELECT sum(l.price::numeric * l.quantity),
           string_agg('{"product_id":"' || l.product_id || '","quantity":' || l.quantity
                      || ',"unit_price":"' || l.price || '"}', ',' ORDER BY l.line_no)
        INTO order_total, items_json
        FROM unnest(line_products, line_quantities, prices) WITH ORDINALITY
             AS l(product_id, quantity, price, line_no);

    INSERT INTO orders (user_id, total, currency, shipping_address)
        VALUES (buyer::uuid, order_total, order_currency, address_json::jsonb)
        RETURNING id, created_at INTO placed_id, placed_at;
    INSERT INTO order_items (order_id, line, product_id, quantity, unit_price)
        SELECT placed_id, l.line_no - 1, l.product_id::uuid, l.quantity, l.price::numeric
        FROM unnest(line_products, line_quantities, prices) WITH ORDINALITY
             AS l(product_id, quantity, price, line_no);

    response := '{"id":"' || placed_id || '","user_id":"' || buyer
        || '","status":"placed","items":[' || items_json
        || '],"total":"' || round(order_total, 2)::text
        || '","currency":"' || order_currency
        || '","shipping_address":' || address_json
        || ',"created_at":"' || json_timestamp(placed_at)
        || '"}';

    PERFORM record_event('order.placed', placed_id, response::jsonb);
    IF idempotency_key IS NOT NULL THEN
        UPDATE idempotency_keys SET response_status = 201,
                                    response_body = convert_to(response, 'UTF8')
            WHERE user_id = buyer::uuid AND key = idempotency_key;
    END IF;
    RETURN response;
END
$$;
