-- Workers: one row per enrolled person; the NIK is unique (one membership per NIK),
-- which is what makes concurrent enrolments of the same person race-proof.
CREATE SEQUENCE participant_number_seq START 1;

CREATE TABLE workers (
    worker_id           uuid        PRIMARY KEY,
    participant_number  char(11)    NOT NULL UNIQUE,
    nik                 char(16)    NOT NULL UNIQUE,
    full_name           text        NOT NULL,
    birth_date          date        NOT NULL,
    gender              char(1)     NOT NULL CHECK (gender IN ('M', 'F')),
    address             text        NOT NULL,
    kelurahan           text        NOT NULL,
    kecamatan_code      text        NOT NULL,
    phone_e164          text        NOT NULL,
    email               text,
    occupation          text        NOT NULL,
    declared_income     bigint      NOT NULL CHECK (declared_income > 0),
    preferred_language  text        NOT NULL,
    request_id          text        NOT NULL,
    enrolled_on         date        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- Every request ever answered, keyed by its idempotency key: the same request again
-- gets the same answer and creates nothing.
CREATE TABLE enrolment_requests (
    request_id          text        PRIMARY KEY,
    source              text        NOT NULL,
    outcome             text        NOT NULL CHECK (outcome IN ('enrolled', 'rejected')),
    worker_id           uuid        REFERENCES workers (worker_id),
    participant_number  char(11),
    reasons             jsonb       NOT NULL DEFAULT '[]',
    received_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'enrolled') = (worker_id IS NOT NULL))
);
CREATE INDEX enrolment_requests_outcome ON enrolment_requests (outcome);
