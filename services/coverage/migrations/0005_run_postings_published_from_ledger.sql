-- The billing run that made a premium posting (null for a first month posted at
-- activation). No foreign key: a run killed after some agreements committed has
-- postings but no billing_runs row.
--
-- A run's PremiumPosted events are not written to the outbox one row each: the run
-- writes one outbox row per agreement naming the `coverage.billing-run-postings`
-- source, and the relay reads the postings back by month, run and payer in policy
-- order. The month's index therefore orders by policy too (it replaces the index on
-- period alone, which every query using it still finds as its leading column).
ALTER TABLE premium_ledger ADD COLUMN billing_run_id uuid;
CREATE INDEX premium_ledger_period_policy ON premium_ledger (period, policy_id);
DROP INDEX premium_ledger_period;

-- A billing run lines its own postings on the month's invoice as it makes them; only the
-- first months posted at activation are looked for afterwards, through this small index
-- rather than a scan of the month's million postings.
CREATE INDEX premium_ledger_first_months ON premium_ledger (period)
    WHERE billing_run_id IS NULL AND entry_type = 'premium';
