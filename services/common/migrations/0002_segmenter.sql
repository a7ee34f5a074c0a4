-- Built-in segment templates are installed once per shop; merchants may edit or remove them.
ALTER TABLE shops ADD COLUMN templates_installed_at timestamptz;

-- Segmenter state: customers (state + derived facts), their orders, the product catalog,
-- processed event ids, segments, memberships and the outbox of membership changes.

CREATE TABLE customers (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    -- Facts (services/segmenter/facts.py): what rules see, one column per field.
    registered_at timestamptz,
    email text,
    accepts_email_marketing boolean NOT NULL DEFAULT false,
    accepts_sms_marketing boolean NOT NULL DEFAULT false,
    country_code text,
    province_code text,
    city text,
    birthday_month smallint,
    tags text[] NOT NULL DEFAULT '{}',
    account_state text,
    orders_count integer NOT NULL DEFAULT 0,
    total_spent numeric NOT NULL DEFAULT 0,
    average_order_value numeric,
    largest_order_value numeric,
    first_order_at timestamptz,
    last_order_at timestamptz,
    refunds_count integer NOT NULL DEFAULT 0,
    refunded_total numeric NOT NULL DEFAULT 0,
    cancelled_orders_count integer NOT NULL DEFAULT 0,
    orders_30d integer NOT NULL DEFAULT 0,
    orders_90d integer NOT NULL DEFAULT 0,
    orders_365d integer NOT NULL DEFAULT 0,
    spent_30d numeric NOT NULL DEFAULT 0,
    spent_90d numeric NOT NULL DEFAULT 0,
    spent_365d numeric NOT NULL DEFAULT 0,
    product_type_counts jsonb NOT NULL DEFAULT '{}',
    vendor_counts jsonb NOT NULL DEFAULT '{}',
    product_counts jsonb NOT NULL DEFAULT '{}',
    top_product_type text,
    abandoned_checkouts integer NOT NULL DEFAULT 0,
    last_abandoned_checkout_at timestamptz,
    page_views integer NOT NULL DEFAULT 0,
    product_views integer NOT NULL DEFAULT 0,
    added_to_cart integer NOT NULL DEFAULT 0,
    emails_opened integer NOT NULL DEFAULT 0,
    emails_clicked integer NOT NULL DEFAULT 0,
    reviews_written integer NOT NULL DEFAULT 0,
    referrals integer NOT NULL DEFAULT 0,
    last_engaged_at timestamptz,
    rfm_recency smallint,
    rfm_frequency smallint,
    rfm_monetary smallint,
    rfm_segment text,
    lifecycle_stage text NOT NULL DEFAULT 'potential',
    -- State the facts are derived from (services/segmenter/state.py).
    profile jsonb NOT NULL DEFAULT '{}',
    checkouts jsonb NOT NULL DEFAULT '{}',
    deleted boolean NOT NULL DEFAULT false,
    -- Evaluation bookkeeping.
    evaluated_at timestamptz,
    next_eval_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, customer_id)
);
CREATE INDEX customers_due ON customers (next_eval_at) WHERE next_eval_at IS NOT NULL;

CREATE TABLE orders (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    order_id bigint NOT NULL,
    -- NULL for POS/draft orders without a customer, and for a refund seen before its order.
    customer_id bigint,
    -- The order itself (from any orders/* delivery); NULL until one has been seen.
    facts jsonb,
    -- Refunds by refund id, merged from refunds/create and orders' embedded refunds[].
    refunds jsonb NOT NULL DEFAULT '{}',
    product_ids bigint[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, order_id)
);
CREATE INDEX orders_by_customer ON orders (shop_id, customer_id);
CREATE INDEX orders_by_product ON orders USING gin (product_ids);

CREATE TABLE products (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    product_id bigint NOT NULL,
    product_type text,
    vendor text,
    title text,
    source_updated_at timestamptz,
    PRIMARY KEY (shop_id, product_id)
);

-- Shopify delivers at least once: an event id seen for (shop, topic) is not applied again.
CREATE TABLE processed_events (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    topic text NOT NULL,
    event_id text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, topic, event_id)
);
CREATE INDEX processed_events_age ON processed_events (processed_at);

CREATE TABLE segments (
    id bigserial PRIMARY KEY,
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    handle text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    conditions jsonb NOT NULL,
    actions jsonb NOT NULL DEFAULT '[]',
    template text,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shop_id, handle)
);

CREATE TABLE memberships (
    shop_id bigint NOT NULL,
    segment_id bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    since timestamptz NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);
CREATE INDEX memberships_by_customer ON memberships (shop_id, customer_id);

-- The outbox: written with the state in one transaction, published to
-- segflow.segment-changes afterwards, marked published once the broker acknowledged.
CREATE TABLE segment_changes (
    change_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigserial UNIQUE,
    shop_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    segment_id bigint NOT NULL,
    segment_handle text NOT NULL,
    segment_version integer NOT NULL,
    change text NOT NULL CHECK (change IN ('entered', 'exited')),
    cause text NOT NULL,
    cause_event_id text,
    received_at timestamptz,
    changed_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX segment_changes_unpublished ON segment_changes (seq) WHERE published_at IS NULL;
