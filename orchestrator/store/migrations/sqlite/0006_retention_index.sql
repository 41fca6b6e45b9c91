-- Retention deletes finished sagas oldest first, a small batch at a time: a partial
-- index holds exactly the sagas it may delete (never one that needs an operator), so a
-- batch is an index range scan however many sagas are kept.

CREATE INDEX sagas_retention_idx ON sagas (update_time, saga_id)
    WHERE status IN ('COMPLETED', 'FAILED') AND NOT needs_intervention;
