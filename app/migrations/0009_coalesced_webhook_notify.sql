-- Coalesce the NOTIFY that wakes the delivery workers.
--
-- A transaction that has NOTIFYed takes a cluster-wide heavyweight lock in
-- PreCommit_Notify (PostgreSQL's src/backend/commands/async.c: "Serialize
-- writers by acquiring a special lock that we hold till after commit") and
-- keeps it until its commit is written, so every notifying order waits for
-- every other one to finish committing. Waking the workers once per commit
-- buys nothing under load: one wake-up claims a whole batch.
--
-- So a transaction NOTIFYs only when
-- * its session sent no NOTIFY in the last 100 ms (app/queries/events.py
--   NOTIFY_WINDOW says the same to the worker). The time of the last one is a
--   session setting, not a table row, so no two sessions touch the same
--   state; set in the transaction, it is undone with it when that
--   transaction rolls back (and its NOTIFY never went out); and
-- * no other transaction is about to NOTIFY: an advisory lock taken without
--   waiting and held, like the NOTIFY lock, to the end of the transaction.
--   The one that holds it wakes the workers as it commits, and nobody ever
--   waits for the NOTIFY lock behind it.
-- An event whose NOTIFY was skipped is found by the claim every worker makes
-- one window after each notification it hears and after it starts listening
-- (app/webhooks/worker.py); should the notifying transaction roll back
-- instead, the next NOTIFY or the poll finds it. The signature is unchanged:
-- other SQL calls record_event() too.
CREATE OR REPLACE FUNCTION record_event(event_type text, aggregate uuid, payload jsonb)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    event_id uuid;
    fanned integer;
    now_epoch double precision;
    notified_at text;
BEGIN
    INSERT INTO events (type, aggregate_id, data) VALUES (event_type, aggregate, payload)
        RETURNING id INTO event_id;
    INSERT INTO webhook_deliveries (event_id, subscription_id)
        SELECT event_id, s.id FROM webhook_subscriptions s
        WHERE s.enabled AND event_type = ANY (s.events);
    GET DIAGNOSTICS fanned = ROW_COUNT;
    IF fanned > 0 THEN
        now_epoch := extract(epoch FROM clock_timestamp());
        notified_at := current_setting('peregrine.webhooks_notified_at', true);
        -- A clock stepped backwards counts as "long ago": one NOTIFY too many
        -- is harmless, a missing one is not.
        -- (1885696613, 9): "pere" and this migration; the two-key advisory
        -- lock space does not overlap migrate's one-key lock.
        IF (notified_at IS NULL OR notified_at = ''
            OR NOT (now_epoch - notified_at::double precision BETWEEN 0 AND 0.1))
           AND pg_try_advisory_xact_lock(1885696613, 9) THEN
            PERFORM pg_notify('peregrine_webhooks', '');
            PERFORM set_config('peregrine.webhooks_notified_at', now_epoch::text, false);
        END IF;
    END IF;
    RETURN event_id;
END
$$;
