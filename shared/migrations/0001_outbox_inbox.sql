-- The transactional outbox: events written in the same transaction as the state they
-- describe, published to Kafka afterwards by the relay, then deleted.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '[]',  -- [[name, hex(value)], ...]
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One NOTIFY per inserting statement (not per row) wakes the relay; it is a hint only,
-- the relay also polls.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The inbox: which events each consumer has already handled. Claiming an event
-- inserts its row in the consumer's transaction; a redelivered event finds it and is
-- skipped.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
