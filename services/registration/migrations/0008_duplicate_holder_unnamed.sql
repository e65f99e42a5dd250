-- A DUPLICATE_NIK rejection no longer names the member who holds the NIK in its reason:
-- the API names the holder only to a caller allowed to read personal data. Answers
-- stored before said "already enrolled as participant N"; they are replayed and shown
-- (request status, import rows) to callers who may only enrol, so the number goes.
UPDATE enrolment_requests
SET reasons = (
    SELECT jsonb_agg(
        CASE WHEN r ->> 'code' = 'DUPLICATE_NIK'
             THEN jsonb_set(r, '{message}', to_jsonb(regexp_replace(
                 r ->> 'message', ' as participant [0-9]{11}', '')))
             ELSE r END
        ORDER BY ordinality)
    FROM jsonb_array_elements(reasons) WITH ORDINALITY AS e(r, ordinality))
WHERE outcome = 'rejected'
  AND reasons @> '[{"code": "DUPLICATE_NIK"}]';
