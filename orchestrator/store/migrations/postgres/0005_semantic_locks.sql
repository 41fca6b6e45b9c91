-- Semantic locks: the keys a saga holds while it runs, and the queues of sagas waiting.
-- A key is taken all or nothing with the saga's own commit and released in the commit
-- that makes the saga terminal; the saga row's version fences both (see Store.take_locks).

-- The saga's keys (JSON list, sorted), computed from its input when it starts.
ALTER TABLE sagas ADD COLUMN lock_keys text NOT NULL DEFAULT '[]';
ALTER TABLE sagas ADD COLUMN locks_held boolean NOT NULL DEFAULT false;
-- When the saga first queued for its keys (its maximum wait counts from here).
ALTER TABLE sagas ADD COLUMN lock_wait_since timestamptz;

-- One row per held key: the primary key is what makes two holders impossible.
CREATE TABLE saga_locks (
    lock_key     text        PRIMARY KEY,
    saga_id      text        NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    acquire_time timestamptz NOT NULL
);
CREATE INDEX saga_locks_saga_idx ON saga_locks (saga_id);

-- Waiting sagas, one row per key; a saga takes one ticket for all its keys, so every
-- queue orders any two sagas the same way (FIFO, and no cycle between queues).
CREATE SEQUENCE saga_lock_tickets;
CREATE TABLE saga_lock_queue (
    lock_key     text        NOT NULL,
    saga_id      text        NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    ticket       bigint      NOT NULL,
    enqueue_time timestamptz NOT NULL,
    PRIMARY KEY (lock_key, saga_id)
);
CREATE INDEX saga_lock_queue_order_idx ON saga_lock_queue (lock_key, ticket, saga_id);
CREATE INDEX saga_lock_queue_saga_idx ON saga_lock_queue (saga_id);
