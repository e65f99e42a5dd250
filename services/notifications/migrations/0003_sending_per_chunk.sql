-- A delivery is 'claimed' by a sender (leased, attempt n) and becomes 'sending' only just
-- before its chunk goes to the provider, in a committed transaction of its own. So after
-- a crash, a claimed delivery is known never to have left (sent again without risk),
-- while one found 'sending' may have been taken by the provider: it is sent again with
-- the same idempotency key / Message-ID and counted in uncertain_sends, like a send
-- whose answer never came (a connection lost during SMTP DATA, an HTTP timeout).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('queued', 'claimed', 'sending', 'retrying', 'sent', 'failed'));
ALTER TABLE deliveries
    ADD COLUMN sending_since timestamptz,
    ADD COLUMN uncertain_sends integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN deliveries.uncertain_sends IS
    'Attempts whose outcome was unknown (a crash while sending, no answer): each may be a duplicate at a provider that does not deduplicate';

DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('queued', 'retrying', 'claimed', 'sending');
