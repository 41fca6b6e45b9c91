-- A COMPLETED saga's output (issue 13): the definition's output message built from the
-- step replies, stored as a serialized google.protobuf.Any when the saga completes.

ALTER TABLE sagas ADD COLUMN output bytea;

-- The gauge of sagas needing an operator counts them by type every few seconds on every
-- replica: a partial index keeps that a scan of the few flagged rows.
CREATE INDEX sagas_intervention_idx ON sagas (saga_type) WHERE needs_intervention = TRUE;
