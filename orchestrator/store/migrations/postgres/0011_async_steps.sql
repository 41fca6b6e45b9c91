-- Asynchronous steps (issue 26). A step accepted by its participant WAITs for a
-- completion through SagaCallbacks until its deadline. The step keeps the sha256 of
-- the completion tokens sent with its command (never the tokens) and the completion
-- recorded for it ("<kind>:<id>"), so a repeat gets the first answer.
ALTER TABLE saga_steps ADD COLUMN wait_deadline timestamptz;
ALTER TABLE saga_steps ADD COLUMN wait_until timestamptz;
ALTER TABLE saga_steps ADD COLUMN completion_tokens text NOT NULL DEFAULT '';
ALTER TABLE saga_steps ADD COLUMN completion_id text NOT NULL DEFAULT '';

-- A saga that only waits for completions is parked: no replica drives it (its lease is
-- released) and claims pass it by until its wake time, its earliest deadline.
ALTER TABLE sagas ADD COLUMN wake_time timestamptz;

-- Tasks (waiting steps people complete) are listed oldest first over a partial index of
-- the few steps that wait.
CREATE INDEX saga_steps_waiting_idx ON saga_steps (update_time, saga_id, step_index)
    WHERE status = 'WAITING';
