-- What each consumer saw under an event id, so that the same id arriving again with
-- different content is noticed, counted and kept with both origins, instead of being
-- skipped silently as a redelivery. Rows from before this migration have no hash.
ALTER TABLE inbox
    ADD COLUMN content_hash bytea,
    ADD COLUMN origin text;
COMMENT ON COLUMN inbox.content_hash IS
    'sha-256 (first 16 bytes) of the event as received (canonical JSON, without occurred_at)';
COMMENT ON COLUMN inbox.origin IS 'topic/partition/offset of the record first handled';

CREATE TABLE inbox_conflicts (
    id            bigserial   PRIMARY KEY,
    consumer      text        NOT NULL,
    event_id      uuid        NOT NULL,
    first_origin  text,
    first_hash    bytea,
    origin        text        NOT NULL,
    content_hash  bytea       NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, event_id, origin)  -- a redelivered record is one conflict, not two
);
