-- Header names are hex-encoded too (a record being dead-lettered may carry a NUL in a
-- header name, which jsonb cannot hold).
COMMENT ON COLUMN outbox.headers IS '[[hex(name), hex(value)], ...] in order';
