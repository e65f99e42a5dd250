-- An outbox row may stand for many records without holding them. A billing run that
-- posts a million premiums writes, in its transaction, one row naming a record source
-- (registered with the service's relay) and its arguments, instead of a million rows.
-- The relay reads the source's records page by page in their order, publishes each
-- page, and keeps its place in source_cursor; when the source is exhausted the row is
-- deleted. The row's topic is where its records go, for operators counting the outbox.
ALTER TABLE outbox
    ADD COLUMN source        text,
    ADD COLUMN source_args   jsonb,
    ADD COLUMN source_cursor text,
    ADD CONSTRAINT outbox_source_holds_no_record
        CHECK (source IS NULL OR (key IS NULL AND value IS NULL AND headers = '[]')),
    ADD CONSTRAINT outbox_source_has_args CHECK ((source IS NULL) = (source_args IS NULL));
