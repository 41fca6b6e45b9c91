-- Tracked sagas (issue 28): the events their services publish.
-- Every event applied is keyed here by its (source, id), written in the transaction of
-- what it did, so a redelivery is found and answered DUPLICATE. A row naming a saga goes
-- with it (retention deletes finished sagas); a row of no saga is swept by time.
CREATE TABLE ingested_events (
    source   text        NOT NULL,
    event_id text        NOT NULL,
    saga_id  text        REFERENCES sagas (saga_id) ON DELETE CASCADE,
    verdict  text        NOT NULL,
    time     TEXT        NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX ingested_events_saga_idx ON ingested_events (saga_id) WHERE saga_id IS NOT NULL;
CREATE INDEX ingested_events_loose_idx ON ingested_events (time) WHERE saga_id IS NULL;

-- Events that came before their turn (or before their instance started), read back by
-- instance when a step begins waiting; expired ones are moved to event_anomalies.
CREATE TABLE held_events (
    source        text        NOT NULL,
    event_id      text        NOT NULL,
    saga_type     text        NOT NULL,
    namespace     text        NOT NULL,
    correlation   text        NOT NULL,
    event_type    text        NOT NULL,
    payload       TEXT        NOT NULL,
    received_time TEXT        NOT NULL,
    expire_time   TEXT        NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX held_events_instance_idx ON held_events (saga_type, namespace, correlation);
CREATE INDEX held_events_expire_idx ON held_events (expire_time);

-- Events no saga's log could record, listed newest first by operators.
CREATE TABLE event_anomalies (
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    correlation text        NOT NULL,
    saga_type   text        NOT NULL,
    reason      text        NOT NULL,
    payload     TEXT        NOT NULL,
    time        TEXT        NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX event_anomalies_time_idx ON event_anomalies (time DESC, source DESC, event_id DESC);
