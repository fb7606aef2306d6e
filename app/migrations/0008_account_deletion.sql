-- Deleting an account keeps its orders for accounting, without personal data:
-- the order's user becomes NULL when the user row goes, and the deletion
-- replaces the shipping address (app/queries/personal_data.py) first.
ALTER TABLE orders ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey;
ALTER TABLE orders ADD CONSTRAINT orders_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;
