-- A worker may be deregistered and enrol again later (registration's membership 2, 3,
-- ...): each membership has its own policy; at most one of a worker's policies is not
-- ended at a time.
ALTER TABLE policies ADD COLUMN membership integer NOT NULL DEFAULT 1 CHECK (membership >= 1);
ALTER TABLE policies DROP CONSTRAINT policies_worker_id_key;
CREATE UNIQUE INDEX policies_worker_membership ON policies (worker_id, membership);
CREATE UNIQUE INDEX policies_one_open_per_worker ON policies (worker_id)
    WHERE status <> 'ended';

-- Every WorkerDeregistered, kept: the policy of that membership ends on its date, now or,
-- when the enrolment has not reached coverage yet, as soon as it does.
CREATE TABLE deregistrations (
    worker_id       uuid        NOT NULL,
    membership      integer     NOT NULL,
    effective_date  date        NOT NULL,
    reason          text        NOT NULL,
    event_id        uuid        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, membership)
);
