-- The billing run that made a premium posting (null for a first month posted at
-- activation). No foreign key: a run killed after some agreements committed has
-- postings but no billing_runs row.
--
-- A run's PremiumPosted events are not written to the outbox one row each: the run
-- writes one outbox_sources row per agreement naming the `coverage.billing-run-postings`
-- source, and the relay reads the postings back by month, payer and run, in policy
-- order: a range of this index, which replaces the index on period alone (every query
-- that used it still finds period as its leading column). A run's postings land at the
-- right edge of their range.
ALTER TABLE premium_ledger ADD COLUMN billing_run_id uuid;
CREATE INDEX premium_ledger_month_payer_run
    ON premium_ledger (period, debit_account, billing_run_id, policy_id);
DROP INDEX premium_ledger_period;

-- A billing run lines its own postings on the month's invoice as it makes them; only the
-- first months posted at activation are looked for afterwards, through this index rather
-- than a scan of the month's million postings. (It holds every posting made before this
-- migration too, all with a null run: small only for the months billed from now on.)
CREATE INDEX premium_ledger_first_months ON premium_ledger (period)
    WHERE billing_run_id IS NULL AND entry_type = 'premium';

-- A UUID of version 7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. The
-- entries a billing run posts take such ids, in time order, so the ledger's and the
-- invoice lines' primary keys grow at their right edge instead of at a random leaf for
-- every posting (a quarter of a million-row run's index time, measured).
CREATE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
            PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                              FROM 3)
            FROM 1 FOR 6), 52, 1), 53, 1),
        'hex')::uuid
$$;
