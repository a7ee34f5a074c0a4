-- Email journeys (services/tagger/journeys/): definitions and their versions, enrolments, the
-- per-(journey, customer) newest change applied, one row per decided step (the send record
-- written before SMTP), conversions, and one-click unsubscribes with their Shopify write-back.

CREATE TABLE journeys (
    id bigserial PRIMARY KEY,
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    handle text NOT NULL,
    name text NOT NULL,
    -- The current version's trigger segment handle: changes find their journeys by it.
    trigger_segment text NOT NULL,
    current_version integer NOT NULL DEFAULT 1,
    -- Not versioned: switching it off pauses in-flight enrolments too.
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shop_id, handle)
);
CREATE INDEX journeys_by_trigger ON journeys (shop_id, trigger_segment);

-- A version's definition is the API's JSON (model.journey_definition) and never changes.
CREATE TABLE journey_versions (
    journey_id bigint NOT NULL REFERENCES journeys (id) ON DELETE CASCADE,
    version integer NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_id, version)
);

CREATE TABLE journey_enrolments (
    id bigserial PRIMARY KEY,
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    journey_id bigint NOT NULL,
    journey_version integer NOT NULL,
    customer_id bigint NOT NULL,
    grp text NOT NULL CHECK (grp IN ('treated', 'holdout')),
    state text NOT NULL CHECK (state IN ('active', 'completed', 'exited')),
    entered_at timestamptz NOT NULL,
    -- The seq of the segment change that enrolled the customer.
    entry_seq bigint NOT NULL,
    step_index integer NOT NULL DEFAULT 0,
    last_step_at timestamptz,
    next_due_at timestamptz,
    exited_at timestamptz,
    exit_reason text,
    FOREIGN KEY (journey_id, journey_version)
        REFERENCES journey_versions (journey_id, version) ON DELETE CASCADE
);
-- The scheduler's queue: active enrolments by due time.
CREATE INDEX journey_enrolments_due ON journey_enrolments (next_due_at) WHERE state = 'active';
CREATE INDEX journey_enrolments_by_customer ON journey_enrolments (shop_id, customer_id);
CREATE INDEX journey_enrolments_by_journey ON journey_enrolments (journey_id, customer_id);

-- The newest segment change seq applied per journey and customer (machine.on_segment_change):
-- duplicates and stale changes are ignored even where no enrolment exists.
CREATE TABLE journey_seen (
    journey_id bigint NOT NULL REFERENCES journeys (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    seen_seq bigint NOT NULL,
    PRIMARY KEY (journey_id, customer_id)
);

-- One row per decided or waiting step. `sending` is committed before SMTP is spoken to; a row
-- still `sending` after its lease died mid-send and is resolved without sending again.
CREATE TABLE journey_sends (
    id bigserial PRIMARY KEY,
    enrolment_id bigint NOT NULL REFERENCES journey_enrolments (id) ON DELETE CASCADE,
    step_index integer NOT NULL,
    message_id text NOT NULL UNIQUE,
    state text NOT NULL CHECK (
        state IN ('sending', 'sent', 'failed', 'unknown', 'suppressed', 'deferred', 'skipped')
    ),
    -- How often the step was held back by quiet hours, the cap or a temporary SMTP failure.
    deferrals integer NOT NULL DEFAULT 0,
    -- How often the email was handed to SMTP (retries of "try later" answers are bounded).
    smtp_attempts integer NOT NULL DEFAULT 0,
    -- A temporary SMTP failure: retried from then (state `deferred`).
    retry_at timestamptz,
    -- Another replica may resolve a `sending` row only after this.
    lease_until timestamptz,
    decided_at timestamptz NOT NULL,
    sent_at timestamptz,
    error text,
    UNIQUE (enrolment_id, step_index)
);
CREATE INDEX journey_sends_retry ON journey_sends (retry_at) WHERE state = 'deferred';
CREATE INDEX journey_sends_sending ON journey_sends (lease_until) WHERE state = 'sending';

-- Orders counted for a journey's lift (either group), once per enrolment and order.
CREATE TABLE journey_conversions (
    enrolment_id bigint NOT NULL REFERENCES journey_enrolments (id) ON DELETE CASCADE,
    order_id bigint NOT NULL,
    placed_at timestamptz NOT NULL,
    revenue numeric NOT NULL,
    PRIMARY KEY (enrolment_id, order_id)
);

-- Unsubscribed through our one-click link: no marketing email from then, whatever the
-- customer's facts say, and written back to Shopify (retried until Shopify took it).
CREATE TABLE consent_overrides (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    unsubscribed_at timestamptz NOT NULL,
    -- The write-back: due while synced_at is NULL.
    synced_at timestamptz,
    sync_due_at timestamptz NOT NULL,
    sync_attempts integer NOT NULL DEFAULT 0,
    sync_error text,
    PRIMARY KEY (shop_id, customer_id)
);
CREATE INDEX consent_overrides_unsynced ON consent_overrides (sync_due_at)
    WHERE synced_at IS NULL;

-- The shipped journeys are installed once per shop, like the segment templates.
ALTER TABLE shops ADD COLUMN journeys_installed_at timestamptz;
