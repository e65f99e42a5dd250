-- The foreign key from a reversal to the entry it reverses queued a check for every row
-- inserted, premiums included (whose `reverses` is null): a twentieth of a billing run's
-- time, and a trigger event held in memory per posting until the statement ended. Only
-- reversals name an entry, so only they are checked, before they are written. The ledger
-- is append-only (no entry is ever deleted or changed), so an entry that exists when its
-- reversal is written exists for good; `ledger check` verifies each reversal mirrors
-- its premium.
ALTER TABLE premium_ledger DROP CONSTRAINT premium_ledger_reverses_fkey;

CREATE FUNCTION premium_ledger_reversal_names_an_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM premium_ledger WHERE entry_id = NEW.reverses) THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('reversal %s names no ledger entry: %s', NEW.entry_id, NEW.reverses);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER premium_ledger_reversal_names_an_entry BEFORE INSERT ON premium_ledger
    FOR EACH ROW WHEN (NEW.reverses IS NOT NULL)
    EXECUTE FUNCTION premium_ledger_reversal_names_an_entry();
