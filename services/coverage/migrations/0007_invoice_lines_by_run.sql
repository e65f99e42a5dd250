-- A billing run no longer copies each posting it makes into an invoice line: that copy
-- (a row and two index entries per posting) was a third of a million-policy run. The
-- run's postings carry the policy's kecamatan and occupation as billed, and one row of
-- invoice_run_lines says "every premium this run posted for the invoice's agreement and
-- month is a line of it". First months posted at activation are still listed one by one,
-- as are the lines of every run made before this migration.
--
-- `invoice_lines` becomes the view of both: every query that reads an invoice's lines
-- reads it unchanged.
ALTER TABLE invoice_lines RENAME TO invoice_listed_lines;
ALTER INDEX invoice_lines_pkey RENAME TO invoice_listed_lines_pkey;
ALTER INDEX invoice_lines_invoice RENAME TO invoice_listed_lines_invoice;

-- Null on the postings that are not a run's (first months, reversals) and on the run
-- postings made before this migration, whose lines are listed; hence NOT VALID.
ALTER TABLE premium_ledger
    ADD COLUMN kecamatan_code text,
    ADD COLUMN occupation     text,
    ADD CONSTRAINT premium_ledger_run_postings_say_where
        CHECK (billing_run_id IS NULL OR (kecamatan_code IS NOT NULL AND occupation IS NOT NULL))
        NOT VALID;

-- Never deleted or changed by the service (its role may only insert): removing a row
-- would take a whole run's postings off their invoice.
CREATE TABLE invoice_run_lines (
    invoice_id      uuid NOT NULL REFERENCES invoices (invoice_id),
    billing_run_id  uuid NOT NULL,
    PRIMARY KEY (invoice_id, billing_run_id)
);

-- A run line stands for a range of premium_ledger_month_payer_run: the run's postings
-- of the invoice's month for the invoice's agreement.
CREATE VIEW invoice_lines AS
    SELECT l.entry_id, l.invoice_id, l.policy_id, l.amount, l.kecamatan_code, l.occupation
    FROM invoice_listed_lines l
    UNION ALL
    SELECT e.entry_id, r.invoice_id, e.policy_id, e.amount, e.kecamatan_code, e.occupation
    FROM invoice_run_lines r
    JOIN invoices i USING (invoice_id)
    JOIN premium_ledger e
      ON e.period = i.period AND e.debit_account = 'payer:' || i.agreement_code
     AND e.billing_run_id = r.billing_run_id AND e.entry_type = 'premium';

-- The n-th UUID of a series sharing the time, version, variant and first 26 random bits
-- of `base` (a UUIDv7), with n in place of its last 48 random bits: still a version 7
-- UUID, and the series is in order. A billing run draws one uuid_v7() per chunk and
-- numbers its postings: building a uuid_v7() per posting was a tenth of the run. n runs
-- from 1 to the chunk's size, far below 2^48. Two chunks would have to share the
-- millisecond and the 26 random bits to collide, and the primary key would refuse it.
CREATE FUNCTION uuid_v7_series(base uuid, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (left(base::text, 24) || lpad(to_hex(n), 12, '0'))::uuid
$$;
