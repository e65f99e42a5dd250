-- Funding agreements: who pays, from which budget, over which window.
CREATE TABLE funding_agreements (
    code            text        PRIMARY KEY,
    payer           text        NOT NULL,
    payer_type      text        NOT NULL CHECK (payer_type IN ('apbd', 'apbn', 'self')),
    funding_source  text        NOT NULL,
    valid_from      date        NOT NULL,
    valid_to        date,       -- exclusive; NULL = until ended
    budget_ceiling  bigint      CHECK (budget_ceiling > 0),
    grace_months    integer     NOT NULL DEFAULT 3,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- Kota Pasuruan pays from its tobacco-excise share (DBHCHT), programme launched
-- 22 May 2025. Open-ended until a renewal or end is recorded.
INSERT INTO funding_agreements (code, payer, payer_type, funding_source, valid_from)
VALUES ('KOTA-PASURUAN-DBHCHT', 'Pemerintah Kota Pasuruan', 'apbd', 'DBHCHT', '2025-05-22');

CREATE TABLE policies (
    policy_id           uuid        PRIMARY KEY,
    worker_id           uuid        NOT NULL UNIQUE,  -- one policy per worker for now
    participant_number  char(11)    NOT NULL,
    agreement_code      text        REFERENCES funding_agreements (code),
    status              text        NOT NULL
                        CHECK (status IN ('pending', 'active', 'lapsed', 'ended')),
    coverage_start      date        NOT NULL,
    declared_income     bigint      NOT NULL,
    kecamatan_code      text        NOT NULL,
    occupation          text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (agreement_code IS NULL))
);
CREATE INDEX policies_status ON policies (status);

-- The premium ledger: append-only. Each row is a journal entry debiting the payer's
-- account and crediting the BPJSTK receivable; a correction is a reversing entry.
CREATE TABLE premium_ledger (
    entry_id        uuid        PRIMARY KEY,
    policy_id       uuid        NOT NULL REFERENCES policies (policy_id),
    worker_id       uuid        NOT NULL,
    period          date        NOT NULL CHECK (extract(day FROM period) = 1),
    entry_type      text        NOT NULL CHECK (entry_type IN ('premium', 'reversal')),
    jkk_amount      bigint      NOT NULL,
    jkm_amount      bigint      NOT NULL,
    amount          bigint      NOT NULL CHECK (amount = jkk_amount + jkm_amount),
    tariff_code     text        NOT NULL,
    debit_account   text        NOT NULL,
    credit_account  text        NOT NULL,
    reverses        uuid        REFERENCES premium_ledger (entry_id),
    posted_at       timestamptz NOT NULL DEFAULT now()
);
-- Never bill a month twice: at most one premium posting per policy and month.
CREATE UNIQUE INDEX premium_ledger_one_premium_per_month
    ON premium_ledger (policy_id, period) WHERE entry_type = 'premium';
CREATE INDEX premium_ledger_period ON premium_ledger (period);

CREATE FUNCTION premium_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'premium_ledger is append-only: % refused; post a reversing entry', TG_OP;
END $$;

CREATE TRIGGER premium_ledger_append_only BEFORE UPDATE OR DELETE ON premium_ledger
    FOR EACH ROW EXECUTE FUNCTION premium_ledger_append_only();
CREATE TRIGGER premium_ledger_no_truncate BEFORE TRUNCATE ON premium_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION premium_ledger_append_only();
