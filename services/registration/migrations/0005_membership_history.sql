-- A worker's membership can end (deregistration) and start again (the same NIK enrols
-- again: a new membership, the same worker_id and participant number). The unique NIK
-- stays: one row per person, which keeps concurrent enrolments of a person race-proof.
-- revision counts the record's changes, so consumers can order the events about it.
ALTER TABLE workers
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'deregistered')),
    ADD COLUMN membership integer NOT NULL DEFAULT 1 CHECK (membership >= 1),
    ADD COLUMN revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
    ADD COLUMN deregistered_on date,
    ADD COLUMN deregistration_reason text,
    ADD CONSTRAINT workers_deregistration_recorded CHECK (
        (status = 'deregistered') = (deregistered_on IS NOT NULL)
        AND (deregistered_on IS NULL) = (deregistration_reason IS NULL));

-- Every change to a worker, kept: who, when, what changed (field -> from, to). Rows are
-- inserted, never updated or deleted.
CREATE TABLE worker_history (
    worker_id       uuid        NOT NULL REFERENCES workers (worker_id),
    revision        integer     NOT NULL,
    change          text        NOT NULL
                    CHECK (change IN ('enrolled', 'details_changed', 'deregistered', 're_enrolled')),
    changes         jsonb       NOT NULL DEFAULT '{}',
    actor           text        NOT NULL,
    request_id      text,
    effective_date  date,
    reason          text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, revision)
);

CREATE FUNCTION worker_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'worker_history is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER worker_history_append_only BEFORE UPDATE OR DELETE ON worker_history
    FOR EACH ROW EXECUTE FUNCTION worker_history_append_only();
CREATE TRIGGER worker_history_no_truncate BEFORE TRUNCATE ON worker_history
    FOR EACH STATEMENT EXECUTE FUNCTION worker_history_append_only();

INSERT INTO worker_history (worker_id, revision, change, actor, request_id, effective_date,
                            recorded_at)
SELECT worker_id, 1, 'enrolled', 'registration', request_id, enrolled_on, created_at
FROM workers;
