-- Failure policy: persisted retry schedules, saga deadlines, and why operators acted.

-- When the next attempt of a STARTED or COMPENSATING step is due; NULL when none is scheduled.
ALTER TABLE saga_steps ADD COLUMN next_attempt_time timestamptz;

-- A RUNNING saga past this time stops moving forward and compensates; NULL for none.
ALTER TABLE sagas ADD COLUMN deadline_time timestamptz;

-- Why a transition happened when someone asked for it (an operator's stated reason).
ALTER TABLE saga_transitions ADD COLUMN reason text NOT NULL DEFAULT '';

-- Operators look for sagas that need them; there are few, so a partial index is small.
CREATE INDEX sagas_needs_intervention_idx ON sagas (create_time DESC, saga_id DESC)
    WHERE needs_intervention;
