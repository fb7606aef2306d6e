-- One normalisation of emails for uniqueness, lookups and rate limits, the
-- same whatever the database's locale: app/emails.py computes it, this
-- column stores it. The old unique index on lower(email) followed the
-- locale's case rules and goes.
ALTER TABLE users ADD COLUMN email_key text;
-- Existing rows: lower() agrees with app/emails.py for every address the
-- locale folds the Unicode way (every UTF-8 locale but Turkish/Azeri).
UPDATE users SET email_key = lower(email);
ALTER TABLE users ALTER COLUMN email_key SET NOT NULL;
CREATE UNIQUE INDEX users_email_key_key ON users (email_key);
DROP INDEX users_email_lower_key;
