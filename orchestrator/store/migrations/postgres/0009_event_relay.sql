-- The relay's partition leases and its dead letters (orchestrator/events/relay.py).
-- A replica publishes a sink's partition only while it holds the partition's lease,
-- claimed with the database clock like a saga's; claiming bumps `version`, and the
-- relay deletes delivered rows only in a transaction that finds the partition still
-- its own at the version it claimed, so a relay that lost it deletes nothing.

CREATE TABLE saga_event_partitions (
    sink         text        NOT NULL,
    partition_no integer     NOT NULL,
    owner        text,
    expires_at   timestamptz,
    version      bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, partition_no)
);

-- An event its broker refused on every attempt, moved here from saga_outbox in the
-- transaction that deletes it there. `id` is its outbox id.
CREATE TABLE saga_dead_events (
    id           bigint      PRIMARY KEY,
    sink         text        NOT NULL,
    partition_no integer     NOT NULL,
    saga_id      text        NOT NULL,
    seq          bigint      NOT NULL,
    event_type   text        NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    attempts     integer     NOT NULL,
    error        text        NOT NULL,
    dead_at      timestamptz NOT NULL DEFAULT now()
);

-- The replicas running a relay, each renewing its row like a lease: a replica's fair
-- share of a sink's partitions is the partitions over the live rows.
CREATE TABLE saga_event_relays (
    owner      text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
