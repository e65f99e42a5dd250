-- Retention: after a configurable number of days, a finished delivery (sent or failed)
-- keeps its status, channel, template, attempts and times, but no longer its recipient
-- or its text. recipient_masked stays, so a delivery can still be told apart.
ALTER TABLE deliveries
    ALTER COLUMN recipient DROP NOT NULL,
    ALTER COLUMN body DROP NOT NULL,
    ADD COLUMN recipient_masked text,
    ADD COLUMN purged_at timestamptz,
    ADD CONSTRAINT deliveries_purged_only_when_finished CHECK (
        purged_at IS NULL
        OR (status IN ('sent', 'failed') AND recipient IS NULL AND body IS NULL
            AND subject IS NULL));
ALTER TABLE deliveries ADD CONSTRAINT deliveries_text_until_purged CHECK (
    purged_at IS NOT NULL OR (recipient IS NOT NULL AND body IS NOT NULL));
COMMENT ON COLUMN deliveries.purged_at IS
    'when the recipient and the text were removed (PERISAI_DELIVERY_RETENTION_DAYS)';
CREATE INDEX deliveries_purgeable ON deliveries (created_at)
    WHERE purged_at IS NULL AND status IN ('sent', 'failed');
