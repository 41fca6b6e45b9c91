-- Webhooks (orchestrator/events/webhook_store.py; docs/events.md, Webhooks).
-- Endpoints are registered by operators at runtime. The `webhooks` sink's relay writes
-- one delivery per (matching endpoint, event), unique on (endpoint_id, event_id), so a
-- republished event never makes a second delivery; delivery workers in every replica
-- claim due deliveries with a lease by the database clock.

CREATE TABLE webhook_endpoints (
    endpoint_id             text        PRIMARY KEY,
    url                     text        NOT NULL,
    description             text        NOT NULL DEFAULT '',
    -- JSON arrays of strings; empty for "every".
    event_types             text        NOT NULL DEFAULT '[]',
    saga_types              text        NOT NULL DEFAULT '[]',
    namespaces              text        NOT NULL DEFAULT '[]',
    enabled                 boolean     NOT NULL DEFAULT true,
    disabled_reason         text        NOT NULL DEFAULT '',
    max_concurrency         integer     NOT NULL DEFAULT 4,
    secret                  text        NOT NULL,
    previous_secret         text,
    previous_secret_expires timestamptz,
    create_time             timestamptz NOT NULL DEFAULT now(),
    update_time             timestamptz NOT NULL DEFAULT now()
);

-- endpoint_id is an endpoint's id, or 'completion' for a saga's completion webhook (its
-- `url` then says where). No foreign key: deleting an endpoint deletes its deliveries
-- in the same transaction, and completion deliveries have none.
CREATE TABLE webhook_deliveries (
    delivery_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      text        NOT NULL,
    url              text        NOT NULL DEFAULT '',
    event_id         text        NOT NULL,
    saga_id          text        NOT NULL,
    event_type       text        NOT NULL,
    body             bytea       NOT NULL,
    -- pending, delivered, failed (410: the endpoint was disabled), dead (schedule spent).
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_http_status integer     NOT NULL DEFAULT 0,
    last_error       text        NOT NULL DEFAULT '',
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);

-- The workers' claim: due pending deliveries.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_saga_idx ON webhook_deliveries (saga_id);

-- A saga's completion webhook (StartSaga's completion_webhook_url), written with the saga.
ALTER TABLE sagas ADD COLUMN completion_webhook_url text;
