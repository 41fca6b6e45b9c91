-- Sagas, their steps and their append-only transition log.
-- Applied by orchestrator.store.migrations inside one transaction, under an advisory lock.

CREATE TABLE sagas (
    saga_id             text        PRIMARY KEY,
    saga_type           text        NOT NULL,
    definition_version  integer     NOT NULL,
    correlation_id      text        NOT NULL,
    -- NULL when the caller sent no key; NULLs never collide under UNIQUE.
    idempotency_key     text        UNIQUE,
    request_fingerprint text        NOT NULL DEFAULT '',
    payload             jsonb       NOT NULL,
    status              text        NOT NULL,
    failure_reason      text        NOT NULL DEFAULT '',
    failed_step         text        NOT NULL DEFAULT '',
    needs_intervention  boolean     NOT NULL DEFAULT false,
    create_time         timestamptz NOT NULL,
    update_time         timestamptz NOT NULL,
    -- Bumped by every commit; a commit names the version it expects (fencing).
    version             integer     NOT NULL,
    -- The replica driving the saga and until when (see Store.claim_sagas).
    lease_owner         text,
    lease_expires_at    timestamptz
);

CREATE INDEX sagas_correlation_id_idx ON sagas (correlation_id);
CREATE INDEX sagas_create_time_idx ON sagas (create_time);
-- Recovery reads unfinished sagas oldest first; finished ones are most rows and never needed.
CREATE INDEX sagas_unfinished_idx ON sagas (create_time, saga_id)
    WHERE status IN ('RUNNING', 'COMPENSATING');

CREATE TABLE saga_steps (
    saga_id               text        NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    step_index            integer     NOT NULL,
    name                  text        NOT NULL,
    status                text        NOT NULL,
    attempts              integer     NOT NULL DEFAULT 0,
    compensation_attempts integer     NOT NULL DEFAULT 0,
    error                 text        NOT NULL DEFAULT '',
    -- The participant's serialized reply, stored once and replayed on recovery.
    result                bytea,
    start_time            timestamptz,
    update_time           timestamptz,
    PRIMARY KEY (saga_id, name)
);

CREATE TABLE saga_transitions (
    saga_id     text        NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    -- Numbers a saga's transitions from 1; a duplicate means two writers.
    seq         integer     NOT NULL,
    event       text        NOT NULL,
    time        timestamptz NOT NULL,
    saga_status text        NOT NULL,
    step        text        NOT NULL DEFAULT '',
    step_status text,
    attempt     integer     NOT NULL DEFAULT 0,
    error       text        NOT NULL DEFAULT '',
    actor       text        NOT NULL,
    PRIMARY KEY (saga_id, seq)
);
