-- The monthly billing cycle: agreements carry their budget and what they have committed
-- of it, each month's premiums are invoiced per agreement, and billing runs are recorded.

-- committed = the premiums posted against the agreement, net of reversals. The ceiling
-- is a hard limit; the check is the last line of defence behind the service's own.
ALTER TABLE funding_agreements
    ADD COLUMN programmes text[]  NOT NULL DEFAULT '{JKK,JKM}'
        CHECK (programmes <@ '{JKK,JKM}' AND cardinality(programmes) > 0),
    ADD COLUMN committed  bigint  NOT NULL DEFAULT 0 CHECK (committed >= 0),
    ADD CONSTRAINT funding_agreements_grace_months CHECK (grace_months BETWEEN 0 AND 24);

-- What each agreement's account holds: its premiums less their reversals.
UPDATE funding_agreements a
SET committed = coalesce((
    SELECT sum(CASE WHEN l.debit_account = 'payer:' || a.code THEN l.amount ELSE -l.amount END)
    FROM premium_ledger l
    WHERE 'payer:' || a.code IN (l.debit_account, l.credit_account)), 0);

-- A ceiling recorded below what was already posted fails here, loudly: raise the
-- ceiling (or reverse what was wrongly posted) before migrating.
ALTER TABLE funding_agreements ADD CONSTRAINT funding_agreements_within_budget
    CHECK (budget_ceiling IS NULL OR committed <= budget_ceiling);

-- A policy's cover ends on a date (death, moving away, end of funding); nothing is
-- billed for the months after it.
-- A policy ended before it ever started has no agreement; pending ones have none,
-- active and lapsed ones always have one.
ALTER TABLE policies
    DROP CONSTRAINT policies_check,
    ADD CONSTRAINT policies_agreement_by_status
        CHECK (status = 'ended' OR (status = 'pending') = (agreement_code IS NULL)),
    ADD COLUMN coverage_end   date,
    ADD COLUMN status_reason  text,
    ADD CONSTRAINT policies_end_after_start
        CHECK (coverage_end IS NULL OR coverage_end >= coverage_start);
-- The payer whose agreements pay for the policy: the agreement it was opened under may
-- end and a renewal (a new agreement of the same payer) goes on billing it.
ALTER TABLE policies ADD COLUMN payer text;
UPDATE policies p SET payer = a.payer FROM funding_agreements a WHERE a.code = p.agreement_code;
ALTER TABLE policies ADD CONSTRAINT policies_payer_with_agreement
    CHECK ((payer IS NULL) = (agreement_code IS NULL));
CREATE INDEX policies_payer_billable ON policies (payer, policy_id)
    WHERE status IN ('active', 'ended');

-- Name-based UUID (RFC 4122 version 3, MD5) as Python's uuid.uuid3 computes it: the
-- set-based billing run derives its event ids in SQL, deterministically. One expression
-- (no FROM), so the planner inlines it: about 12 us a call, against 25 us for a version
-- computing the digest once in a subquery, which cannot be inlined.
CREATE FUNCTION uuid_v3(namespace uuid, name text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT overlay(
               overlay(md5(uuid_send(namespace) || convert_to(name, 'UTF8')) placing '3' from 13)
               placing substr('89ab89ab89ab89ab',
                              strpos('0123456789abcdef',
                                     substr(md5(uuid_send(namespace) || convert_to(name, 'UTF8')),
                                            17, 1)),
                              1)
               from 17)::uuid
$$;

-- One invoice per agreement and month. Its total is the sum of its lines; a line is one
-- ledger entry (traceable to policy and month), with the worker's kecamatan and
-- occupation as they were when billed.
CREATE TABLE invoices (
    invoice_id      uuid        PRIMARY KEY,
    agreement_code  text        NOT NULL REFERENCES funding_agreements (code),
    period          date        NOT NULL CHECK (extract(day FROM period) = 1),
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'paid', 'void')),
    revision        integer     NOT NULL DEFAULT 1 CHECK (revision >= 1),
    headcount       integer     NOT NULL CHECK (headcount >= 0),
    total           bigint      NOT NULL CHECK (total >= 0),
    paid_amount     bigint      NOT NULL DEFAULT 0 CHECK (paid_amount >= 0),
    void_reason     text,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agreement_code, period),
    CHECK ((status = 'void') = (void_reason IS NOT NULL))
);
CREATE INDEX invoices_period ON invoices (period);

-- No foreign keys here: a billing run writes a line per policy (a million for a
-- province) and a key check per row would cost it more than the lines themselves. The
-- ledger is append-only and never loses an entry, and `ledger check` verifies that
-- every line is a posting of its invoice's month.
CREATE TABLE invoice_lines (
    entry_id        uuid        PRIMARY KEY,
    invoice_id      uuid        NOT NULL,
    policy_id       uuid        NOT NULL,
    amount          bigint      NOT NULL,
    kecamatan_code  text        NOT NULL,
    occupation      text        NOT NULL
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id);

-- Each billing run, for operations: when it ran and what it did.
CREATE TABLE billing_runs (
    run_id       uuid        PRIMARY KEY,
    period       date        NOT NULL CHECK (extract(day FROM period) = 1),
    trigger      text        NOT NULL CHECK (trigger IN ('command', 'api', 'schedule')),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    summary      jsonb       NOT NULL
);
CREATE INDEX billing_runs_period ON billing_runs (period);

-- Which invoice, unpaid past grace, lapsed a policy: settling it reinstates the policy.
ALTER TABLE policies ADD COLUMN lapsed_by uuid REFERENCES invoices (invoice_id),
    ADD CONSTRAINT policies_lapsed_by CHECK ((status = 'lapsed') = (lapsed_by IS NOT NULL));
CREATE INDEX policies_lapsed_by ON policies (lapsed_by) WHERE lapsed_by IS NOT NULL;

-- Payments of invoices, as the payer reported them. One reference is recorded once.
CREATE TABLE invoice_payments (
    payment_id   uuid        PRIMARY KEY,
    invoice_id   uuid        NOT NULL REFERENCES invoices (invoice_id),
    amount       bigint      NOT NULL CHECK (amount > 0),
    paid_on      date        NOT NULL,
    reference    text        NOT NULL CHECK (reference ~ '^[^\x01-\x1f\x7f]{1,128}$'),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (invoice_id, reference)
);

-- A premium is reversed at most once.
CREATE UNIQUE INDEX premium_ledger_one_reversal ON premium_ledger (reverses)
    WHERE reverses IS NOT NULL;
ALTER TABLE premium_ledger ADD CONSTRAINT premium_ledger_reversal_names_its_premium
    CHECK ((entry_type = 'reversal') = (reverses IS NOT NULL)) NOT VALID;
