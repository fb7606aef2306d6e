-- Mail and the single-use tokens it carries (email verification, password reset).
--
-- Mail has its own outbox table rather than being a kind of webhook delivery:
-- a webhook delivery is one event x one subscription (both foreign keys, the
-- event types checked), is signed and pruned with its event, while a mail has
-- a recipient, a template and personal data that must go with the account.
-- The claiming is the same (lease, FOR UPDATE SKIP LOCKED, retries with
-- backoff); see app/queries/mails.py.

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- A token is 256 random bits shown once (in the mail); only its sha256 is
-- kept. It is bound to the account and to the address it was sent to, so a
-- token for an old address cannot verify a new one.
CREATE TABLE email_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    email_key   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);

-- One row per mail, written in the transaction of the token it carries.
--   pending     not tried yet
--   sending     claimed by a worker until lease_until (then claimable again)
--   failed      the last attempt failed; next_attempt_at is the retry
--   sent        the SMTP server accepted it
--   dead        given up (permanent refusal, or retries exhausted)
-- `params` holds what the template needs, the link token included; it is
-- emptied once the mail is sent or dead, so a token lives in this table only
-- while it is on its way.
CREATE TABLE mails (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    recipient        text NOT NULL CHECK (length(recipient) BETWEEN 3 AND 254),
    template         text NOT NULL CHECK (template ~ '^[a-z_]+$'),
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'failed', 'sent', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_error       text CHECK (length(last_error) <= 300),
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mails_due_idx ON mails (next_attempt_at) WHERE status IN ('pending', 'sending', 'failed');
CREATE INDEX mails_created_idx ON mails (created_at);
