-- The contact is the worker's newest: WorkerDetailsChanged (a higher revision) replaces
-- it, whichever of the worker's events arrives first. A worker enrolling again (a new
-- membership) gets a new confirmation, once both halves of that membership are in.
-- A row holding no contact yet (the policy half came first) is at revision 0, so any
-- contact (an enrolment is revision 1) fills it.
ALTER TABLE confirmations
    ADD COLUMN contact_revision integer NOT NULL DEFAULT 0,
    ADD COLUMN membership integer NOT NULL DEFAULT 1,
    ADD COLUMN policy_membership integer NOT NULL DEFAULT 1;
