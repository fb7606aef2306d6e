-- Per-memcached-node epochs (app/cache_epochs.py). Every cache key is stored as
-- "e<epoch>:<key>" on the node it hashes to; bumping a node's epoch makes all of
-- its old keys unreachable, which is how an invalidation that could not reach the
-- node (timeout, open breaker) is made harmless.
--
-- An epoch must never be handed out twice: a reused value would make keys
-- written under it readable again. So epochs come from a sequence that is not
-- owned by the table (TRUNCATE ... RESTART IDENTITY does not reset it) and that
-- starts at the current time in milliseconds, above anything a previous
-- incarnation of this database handed out (unless it averaged more than 1000
-- bumps a second). Readers never adopt a lower epoch than one they know.

CREATE SEQUENCE cache_epoch_seq AS bigint;
SELECT setval('cache_epoch_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint);

CREATE TABLE cache_epochs (
    node      text PRIMARY KEY,              -- "host:port" as configured
    epoch     bigint NOT NULL,
    bumped_at timestamptz NOT NULL DEFAULT now()
);
