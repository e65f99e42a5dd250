-- char(n) columns become text with a check (see registration's 0002): a text parameter
-- or array compared with a char(n) column can cost an index.
ALTER TABLE confirmations
    ALTER COLUMN participant_number TYPE text,
    ADD CONSTRAINT confirmations_participant_number_digits
        CHECK (participant_number ~ '^[0-9]{11}$');
