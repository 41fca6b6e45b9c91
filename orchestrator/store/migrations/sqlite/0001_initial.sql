-- Sagas, their steps and their append-only transition log.
-- Times are ISO-8601 UTC text with microseconds ('2024-05-01T12:00:00.000000+00:00'):
-- fixed width, so they sort as text in time order. Payloads are JSON text.

CREATE TABLE sagas (
    saga_id             TEXT    PRIMARY KEY NOT NULL,
    saga_type           TEXT    NOT NULL,
    definition_version  INTEGER NOT NULL,
    correlation_id      TEXT    NOT NULL,
    -- NULL when the caller sent no key; NULLs never collide under UNIQUE.
    idempotency_key     TEXT    UNIQUE,
    request_fingerprint TEXT    NOT NULL DEFAULT '',
    payload             TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    failure_reason      TEXT    NOT NULL DEFAULT '',
    failed_step         TEXT    NOT NULL DEFAULT '',
    needs_intervention  INTEGER NOT NULL DEFAULT 0,
    create_time         TEXT    NOT NULL,
    update_time         TEXT    NOT NULL,
    -- Bumped by every commit; a commit names the version it expects (fencing).
    version             INTEGER NOT NULL,
    -- The replica driving the saga and until when (see Store.claim_sagas).
    lease_owner         TEXT,
    lease_expires_at    TEXT
);

CREATE INDEX sagas_correlation_id_idx ON sagas (correlation_id);
CREATE INDEX sagas_create_time_idx ON sagas (create_time);
-- Recovery reads unfinished sagas oldest first; finished ones are most rows and never needed.
CREATE INDEX sagas_unfinished_idx ON sagas (create_time, saga_id)
    WHERE status IN ('RUNNING', 'COMPENSATING');

CREATE TABLE saga_steps (
    saga_id               TEXT    NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    step_index            INTEGER NOT NULL,
    name                  TEXT    NOT NULL,
    status                TEXT    NOT NULL,
    attempts              INTEGER NOT NULL DEFAULT 0,
    compensation_attempts INTEGER NOT NULL DEFAULT 0,
    error                 TEXT    NOT NULL DEFAULT '',
    -- The participant's serialized reply, stored once and replayed on recovery.
    result                BLOB,
    start_time            TEXT,
    update_time           TEXT,
    PRIMARY KEY (saga_id, name)
);

CREATE TABLE saga_transitions (
    saga_id     TEXT    NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    -- Numbers a saga's transitions from 1; a duplicate means two writers.
    seq         INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    time        TEXT    NOT NULL,
    saga_status TEXT    NOT NULL,
    step        TEXT    NOT NULL DEFAULT '',
    step_status TEXT,
    attempt     INTEGER NOT NULL DEFAULT 0,
    error       TEXT    NOT NULL DEFAULT '',
    actor       TEXT    NOT NULL,
    PRIMARY KEY (saga_id, seq)
) WITHOUT ROWID;
