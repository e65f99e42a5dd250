-- Clerk search: by name (accent- and case-insensitive prefix, on name_key, which the
-- service computes: letters and digits without accents, lower case, single spaces), by
-- the last four NIK digits plus birth date, or by phone.
ALTER TABLE workers ADD COLUMN name_key text;
UPDATE workers SET name_key = trim(regexp_replace(lower(full_name), '[^[:alnum:]]+', ' ', 'g'));
ALTER TABLE workers ALTER COLUMN name_key SET NOT NULL;
-- In byte order whatever the database's collation, so a prefix is a range of the index
-- and pages follow it.
CREATE INDEX workers_name_key ON workers ((name_key COLLATE "C"), participant_number);
CREATE INDEX workers_birth_date ON workers (birth_date);
CREATE INDEX workers_phone ON workers (phone_e164);
