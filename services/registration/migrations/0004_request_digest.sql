-- The digest of the request each idempotency key answered: the same key with another
-- request is a conflict (409), not the first answer again. Requests recorded before
-- this have no digest and are answered as before.
ALTER TABLE enrolment_requests ADD COLUMN request_digest text
    CHECK (request_digest ~ '^[0-9a-f]{64}$');
