-- Refresh-token families get a row of their own: the lock that makes
-- rotation and revocation serialise.
--
-- Before this, a logout (or a password change, or reuse detection) revoked
-- with one UPDATE over refresh_tokens, and a refresh in flight at that moment
-- committed a child token the UPDATE's snapshot never saw: the family lived
-- on. Now a rotation locks its family row (FOR NO KEY UPDATE) and checks it
-- is not revoked; a revocation writes that same row. Whichever comes second
-- waits for the first and then sees its effect. The family row is the one
-- truth about revocation.

CREATE TABLE refresh_families (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX refresh_families_user_live_idx ON refresh_families (user_id) WHERE revoked_at IS NULL;

-- Families so far: revocation always covered a whole family, so any revoked
-- token means a revoked family.
INSERT INTO refresh_families (id, user_id, created_at, revoked_at)
SELECT family_id, (array_agg(user_id))[1], min(issued_at), max(revoked_at)
FROM refresh_tokens GROUP BY family_id;

ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_family_fkey
    FOREIGN KEY (family_id) REFERENCES refresh_families (id) ON DELETE CASCADE;
