-- The two halves of a confirmation arrive on different topics in either order: the
-- contact (worker.enrolled) and the policy (policy.activated). Each handler upserts
-- its half; the ON CONFLICT row lock serialises the two, so exactly one of them sees
-- the row complete and queues the messages.
CREATE TABLE confirmations (
    worker_id           uuid        PRIMARY KEY,
    full_name           text,
    participant_number  char(11),
    nik_masked          text,
    phone_e164          text,
    email               text,
    language            text,
    correlation_id      text,
    policy_id           uuid,
    coverage_start      date,
    payer               text,
    policy_event_id     uuid,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    delivery_id          uuid        PRIMARY KEY,  -- also the provider idempotency key
    worker_id            uuid        NOT NULL,
    channel              text        NOT NULL CHECK (channel IN ('sms', 'email')),
    template             text        NOT NULL,
    recipient            text        NOT NULL,
    subject              text,
    body                 text        NOT NULL,
    status               text        NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'sending', 'retrying', 'sent', 'failed')),
    attempts             integer     NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    lease_until          timestamptz,
    last_error           text,
    provider_message_id  text,
    correlation_id       text        NOT NULL,
    causation_id         uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('queued', 'retrying', 'sending');
CREATE INDEX deliveries_worker ON deliveries (worker_id);
