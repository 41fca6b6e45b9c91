-- Tenancy: every saga belongs to a namespace; sagas stored before this are in 'default'
-- (a constant default: no table rewrite). Idempotency keys and semantic lock keys are
-- unique per namespace. The store keeps them qualified, '<namespace>/<key>' (a namespace
-- holds no '/'), so the one-column unique index of idempotency_key, the lock tables'
-- primary keys, the advisory lock of each key and the release notifications all
-- separate tenants, with the same statements on both back ends.

ALTER TABLE sagas ADD COLUMN namespace text NOT NULL DEFAULT 'default';

UPDATE sagas SET idempotency_key = 'default/' || idempotency_key
    WHERE idempotency_key IS NOT NULL;
-- The keys stay sorted: one prefix for all of them keeps their order.
UPDATE sagas SET lock_keys = (
        SELECT json_agg('default/' || k ORDER BY n)::text
        FROM json_array_elements_text(lock_keys::json) WITH ORDINALITY AS e (k, n)
    )
    WHERE lock_keys <> '[]';
UPDATE saga_locks SET lock_key = 'default/' || lock_key;
UPDATE saga_lock_queue SET lock_key = 'default/' || lock_key;

-- A caller bound to one namespace lists it newest first, keyset-paged as 0003's indexes.
CREATE INDEX sagas_namespace_listing_idx ON sagas (namespace, create_time DESC, saga_id DESC);
