-- The transactional outbox: one row per event an event sink selects, written in the
-- transaction that commits the transition it announces (orchestrator.core.events), read
-- and deleted by the relay once the sink has it. No foreign key to sagas: retention
-- deletes a finished saga's rows, never its undelivered events.
-- `id` orders the rows (AUTOINCREMENT: an id is never reused, even after deletes).

CREATE TABLE saga_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sink         TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    saga_id      TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    -- The CloudEvent in the structured JSON mode (application/cloudevents+json).
    body         BLOB    NOT NULL,
    -- ISO-8601 UTC text, as every time of this store.
    created_at   TEXT    NOT NULL
        DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

-- The relay's read: a (sink, partition)'s oldest rows.
CREATE INDEX saga_outbox_partition_idx ON saga_outbox (sink, partition_no, id);
