-- Claims pass parked sagas by (issue 26). A saga waiting for asynchronous completions
-- stays unfinished, so in sagas_unfinished_idx a claim walked every parked saga older
-- than the first claimable one (10,000 parked: 10,000 rows filtered per claim). A claim
-- now reads two partial indexes: the unfinished sagas that are not parked, oldest
-- first, and the parked ones by wake time, of which it reads only those due.
CREATE INDEX sagas_claimable_idx ON sagas (create_time, saga_id)
    WHERE status IN ('RUNNING', 'COMPENSATING') AND wake_time IS NULL;
CREATE INDEX sagas_wake_idx ON sagas (wake_time)
    WHERE status IN ('RUNNING', 'COMPENSATING') AND wake_time IS NOT NULL;
