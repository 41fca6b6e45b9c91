-- Tenancy: every saga belongs to a namespace; sagas stored before this are in 'default'.
-- Idempotency keys and semantic lock keys are unique per namespace. The store keeps them
-- qualified, '<namespace>/<key>' (a namespace holds no '/'), so the existing one-column
-- UNIQUE of idempotency_key and the lock tables' primary keys separate tenants: SQLite
-- cannot change a column's UNIQUE without rebuilding the table (and its children).

ALTER TABLE sagas ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';

UPDATE sagas SET idempotency_key = 'default/' || idempotency_key
    WHERE idempotency_key IS NOT NULL;
-- The keys stay sorted: one prefix for all of them keeps their order.
UPDATE sagas SET lock_keys = (
        SELECT json_group_array('default/' || value)
        FROM (SELECT value FROM json_each(sagas.lock_keys) ORDER BY key)
    )
    WHERE lock_keys <> '[]';
UPDATE saga_locks SET lock_key = 'default/' || lock_key;
UPDATE saga_lock_queue SET lock_key = 'default/' || lock_key;

-- A caller bound to one namespace lists it newest first, keyset-paged as 0003's indexes.
CREATE INDEX sagas_namespace_listing_idx ON sagas (namespace, create_time DESC, saga_id DESC);
