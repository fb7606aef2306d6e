-- TOTP two-factor sign-in (RFC 6238).
--
-- The shared secret is stored sealed with PEREGRINE_DATA_KEY (Fernet: AES-128-CBC
-- and HMAC-SHA256): a copy of the database alone does not give the codes away.
-- An enrolment counts only once a code confirmed it (confirmed_at). last_step
-- is the 30-second step of the last code accepted: a code is accepted only
-- for a later step, so each code works once, even within its window.
CREATE TABLE user_totp (
    user_id           uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed     bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    confirmed_at      timestamptz,
    last_step         bigint
);

-- Ten per confirmed enrolment, shown once; only their sha256 is kept (each
-- is 80 random bits, too many to try against a hash).
CREATE TABLE recovery_codes (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- The first step of an MFA login: a password that checked out, waiting for
-- a code. The mfa_token is shown once (sha256 kept), lives five minutes, is
-- spent by a correct code and dies after a few wrong ones. `credentials` is
-- the sha256 of the password hash it was issued for: a password changed in
-- between makes it worthless.
CREATE TABLE mfa_challenges (
    token_hash   bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credentials  bytea NOT NULL,
    expires_at   timestamptz NOT NULL,
    failures     integer NOT NULL DEFAULT 0,
    used_at      timestamptz
);
CREATE INDEX mfa_challenges_user_idx ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_expires_idx ON mfa_challenges (expires_at);
