-- The relay's partition leases and its dead letters (orchestrator/events/relay.py).
-- A replica publishes a sink's partition only while it holds the partition's lease;
-- claiming bumps `version`, and the relay deletes delivered rows only in a transaction
-- that finds the partition still its own at the version it claimed, so a relay that
-- lost it deletes nothing.

CREATE TABLE saga_event_partitions (
    sink         TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    owner        TEXT,
    -- ISO-8601 UTC text, as every time of this store.
    expires_at   TEXT,
    version      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, partition_no)
);

-- An event its broker refused on every attempt, moved here from saga_outbox in the
-- transaction that deletes it there. `id` is its outbox id.
CREATE TABLE saga_dead_events (
    id           INTEGER PRIMARY KEY,
    sink         TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    saga_id      TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    created_at   TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    error        TEXT    NOT NULL,
    dead_at      TEXT    NOT NULL
        DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

-- The replicas running a relay, each renewing its row like a lease: a replica's fair
-- share of a sink's partitions is the partitions over the live rows.
CREATE TABLE saga_event_relays (
    owner      TEXT PRIMARY KEY,
    expires_at TEXT    NOT NULL
);
