-- Outbox rows that stand for many records without holding them. A billing run that
-- posts a million premiums writes, in its transaction, one row naming a record source
-- (registered with the service's relay) and its arguments, instead of a million rows.
-- The relay reads the source's records page by page in their order, publishes each
-- page, and keeps its place in source_cursor; when the source is exhausted the row is
-- deleted. Its id comes from the outbox's own sequence: the relay publishes both tables
-- in one order. A table of its own, because a relay of an earlier version, still
-- running during a rolling deploy, reads only `outbox` and would publish such a row as
-- one empty record.
CREATE TABLE outbox_sources (
    id             bigint      PRIMARY KEY DEFAULT nextval('outbox_id_seq'),
    topic          text        NOT NULL,  -- where its records go, for operators
    source         text        NOT NULL,
    args           jsonb       NOT NULL,
    source_cursor  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER outbox_sources_notify AFTER INSERT ON outbox_sources
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
