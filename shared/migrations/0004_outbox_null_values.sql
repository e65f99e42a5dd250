-- A Kafka record's value may be null (a tombstone), and a dead letter keeps the record
-- as it was; header values may be null too (stored as JSON null in headers).
ALTER TABLE outbox ALTER COLUMN value DROP NOT NULL;
ALTER TABLE outbox_parked ALTER COLUMN value DROP NOT NULL;
COMMENT ON COLUMN outbox.headers IS '[[hex(name), hex(value) or null], ...] in order';
