-- Who may call the service's HTTP API: keys with scopes, kept as SHA-256 only (the key
-- is shown once, when it is made). A key is revoked or expires; it is never deleted, so
-- the access log always names a known key.
CREATE TABLE api_keys (
    key_id      uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    shown       text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    scopes      text[]      NOT NULL CHECK (
                    cardinality(scopes) > 0
                    AND scopes <@ ARRAY['enrol', 'read', 'admin', 'finance', 'ops']),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
COMMENT ON COLUMN api_keys.shown IS 'the first 12 characters of the key, to tell keys apart';
COMMENT ON COLUMN api_keys.key_hash IS 'SHA-256 of the whole key';

-- Every read of a worker's personal data: who (the key, and the person the caller says
-- it acts for), when, which worker, by which endpoint. Inserted, never changed.
CREATE TABLE personal_data_access (
    id           bigserial   PRIMARY KEY,
    accessed_at  timestamptz NOT NULL DEFAULT now(),
    key_id       uuid        NOT NULL REFERENCES api_keys (key_id),
    actor        text,
    method       text        NOT NULL,
    endpoint     text        NOT NULL,
    subject      text        NOT NULL
);
CREATE INDEX personal_data_access_subject ON personal_data_access (subject, accessed_at);
COMMENT ON COLUMN personal_data_access.actor IS 'X-Actor as sent: the clerk the caller acts for';
COMMENT ON COLUMN personal_data_access.endpoint IS 'the route, e.g. GET /v1/workers/{participant_number}';
COMMENT ON COLUMN personal_data_access.subject IS 'the worker read: participant number or worker id';

CREATE FUNCTION personal_data_access_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'personal_data_access is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER personal_data_access_append_only BEFORE UPDATE OR DELETE ON personal_data_access
    FOR EACH ROW EXECUTE FUNCTION personal_data_access_append_only();
CREATE TRIGGER personal_data_access_no_truncate BEFORE TRUNCATE ON personal_data_access
    FOR EACH STATEMENT EXECUTE FUNCTION personal_data_access_append_only();
