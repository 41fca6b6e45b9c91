-- The transactional outbox: one row per event an event sink selects, written in the
-- transaction that commits the transition it announces (orchestrator.core.events), read
-- and deleted by the relay once the sink has it. No foreign key to sagas: retention
-- deletes a finished saga's rows, never its undelivered events.
-- `id` orders the rows: a saga's commits are serialized by its version, so its events'
-- ids rise in its log's order; the relay reads each (sink, partition) in id order.

CREATE TABLE saga_outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sink         text        NOT NULL,
    partition_no integer     NOT NULL,
    saga_id      text        NOT NULL,
    seq          bigint      NOT NULL,
    event_type   text        NOT NULL,
    -- The CloudEvent in the structured JSON mode (application/cloudevents+json).
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The relay's read: a (sink, partition)'s oldest rows.
CREATE INDEX saga_outbox_partition_idx ON saga_outbox (sink, partition_no, id);
