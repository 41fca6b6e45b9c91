-- Webhooks (orchestrator/events/webhook_store.py; docs/events.md, Webhooks). As in the
-- PostgreSQL migration; times are ISO-8601 UTC text, as every time of this store.

CREATE TABLE webhook_endpoints (
    endpoint_id             TEXT    PRIMARY KEY,
    url                     TEXT    NOT NULL,
    description             TEXT    NOT NULL DEFAULT '',
    event_types             TEXT    NOT NULL DEFAULT '[]',
    saga_types              TEXT    NOT NULL DEFAULT '[]',
    namespaces              TEXT    NOT NULL DEFAULT '[]',
    enabled                 INTEGER NOT NULL DEFAULT 1,
    disabled_reason         TEXT    NOT NULL DEFAULT '',
    max_concurrency         INTEGER NOT NULL DEFAULT 4,
    secret                  TEXT    NOT NULL,
    previous_secret         TEXT,
    previous_secret_expires TEXT,
    create_time             TEXT    NOT NULL,
    update_time             TEXT    NOT NULL
);

CREATE TABLE webhook_deliveries (
    delivery_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id      TEXT    NOT NULL,
    url              TEXT    NOT NULL DEFAULT '',
    event_id         TEXT    NOT NULL,
    saga_id          TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    body             BLOB    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    last_http_status INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    create_time      TEXT    NOT NULL,
    update_time      TEXT    NOT NULL,
    UNIQUE (endpoint_id, event_id)
);

CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_saga_idx ON webhook_deliveries (saga_id);

-- A saga's completion webhook (StartSaga's completion_webhook_url), written with the saga.
ALTER TABLE sagas ADD COLUMN completion_webhook_url TEXT;
