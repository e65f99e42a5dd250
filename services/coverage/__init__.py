"""Coverage: turns enrolments into active policies and an append-only premium ledger."""
