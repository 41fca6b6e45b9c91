-- ListSagas reads newest first, keyset-paged on (create_time, saga_id), optionally
-- filtered on one column: one index per filter, in that order, so a page is an index
-- range scan however many sagas are stored.

DROP INDEX IF EXISTS sagas_create_time_idx;
DROP INDEX IF EXISTS sagas_correlation_id_idx;
CREATE INDEX sagas_listing_idx ON sagas (create_time DESC, saga_id DESC);
CREATE INDEX sagas_status_listing_idx ON sagas (status, create_time DESC, saga_id DESC);
CREATE INDEX sagas_type_listing_idx ON sagas (saga_type, create_time DESC, saga_id DESC);
CREATE INDEX sagas_correlation_listing_idx
    ON sagas (correlation_id, create_time DESC, saga_id DESC);
