-- Bulk CSV imports. An import is identified by its file's SHA-256: the same file again
-- is the same import. Each data row is an enrolment request whose idempotency key is
-- (file digest, row number), answered in enrolment_requests like any other; import_rows
-- links them, written in the same transaction as the rows' enrolments, so a crash leaves
-- whole batches done and the next upload of the file carries on after them.
CREATE TABLE imports (
    import_id       uuid        PRIMARY KEY,
    file_digest     text        NOT NULL UNIQUE CHECK (file_digest ~ '^[0-9a-f]{64}$'),
    filename        text,
    rows_total      integer     NOT NULL CHECK (rows_total >= 0),
    ignored_columns jsonb       NOT NULL DEFAULT '[]',
    status          text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    uploads         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE TABLE import_rows (
    import_id   uuid    NOT NULL REFERENCES imports (import_id),
    row_number  integer NOT NULL CHECK (row_number >= 1),
    line        integer NOT NULL,
    request_id  text    NOT NULL REFERENCES enrolment_requests (request_id),
    PRIMARY KEY (import_id, row_number)
);

