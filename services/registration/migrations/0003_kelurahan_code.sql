-- The kelurahan is checked against the official list (services/registration/data):
-- a worker keeps its Kemendagri code beside the official spelling. Workers enrolled
-- before the check have no code; their kecamatan codes are put in dotted form.
ALTER TABLE workers ADD COLUMN kelurahan_code text
    CHECK (kelurahan_code ~ '^[0-9]{2}\.[0-9]{2}\.[0-9]{2}\.[0-9]{4}$');
UPDATE workers
SET kecamatan_code = regexp_replace(kecamatan_code, '^([0-9]{2})([0-9]{2})([0-9]{2})$', '\1.\2.\3')
WHERE kecamatan_code ~ '^[0-9]{6}$';
