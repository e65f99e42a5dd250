-- Rows Kafka refused for good (too large, invalid topic): kept with the reason for an
-- operator to look at and replay, instead of failing every relay round.
CREATE TABLE outbox_parked (
    id          bigint      PRIMARY KEY,
    event_id    uuid,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    reason      text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
