-- The ledger's foreign key to policies checked each posting on its own, a third of the
-- time a million-policy billing run spends writing the ledger. Every posting takes its
-- policy from the policies table in the statement that writes it (the billing run, an
-- activation, a reversal of an earlier posting), so the key can only break if a policy
-- row goes away or changes its id. That is refused here instead, and `ledger check`
-- verifies that every posting names a policy of its worker.
ALTER TABLE premium_ledger DROP CONSTRAINT premium_ledger_policy_id_fkey;

CREATE FUNCTION policies_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'policies are never deleted or renumbered (the ledger names them): % refused',
        TG_OP;
END $$;

CREATE TRIGGER policies_kept BEFORE DELETE OR UPDATE OF policy_id ON policies
    FOR EACH ROW EXECUTE FUNCTION policies_kept();
CREATE TRIGGER policies_no_truncate BEFORE TRUNCATE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION policies_kept();
