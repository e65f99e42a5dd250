-- Records a consumer gave up on, as they were received (key, value and headers byte for
-- byte, headers hex-encoded like the outbox's). They may hold personal data (an
-- unreadable enrolment request carries a full NIK), so they stay in the consuming
-- service's schema; the dead-letter topic gets a notice naming the letter_id instead.
CREATE TABLE dead_letters (
    letter_id         uuid        PRIMARY KEY,
    consumer          text        NOT NULL,
    origin_topic      text        NOT NULL,
    origin_partition  integer     NOT NULL,
    origin_offset     bigint      NOT NULL,
    key               bytea,
    value             bytea,
    headers           jsonb       NOT NULL,
    reason            text        NOT NULL,
    failed_at         timestamptz NOT NULL
);
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);
COMMENT ON TABLE dead_letters IS
    'originals of dead-lettered records; the .dlq topic carries a masked notice only';
