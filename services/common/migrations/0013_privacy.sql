-- Shopify's compliance webhooks (services/common/privacy.py): customers/redact, shop/redact,
-- customers/data_request.

-- A customer or order erased by customers/redact is remembered only as a digest of its id under
-- a random per-shop salt, so events of it still in Kafka, or arriving later, are dropped rather
-- than bringing it back, and nothing here names it. The salt goes with the shop (shop/redact).
ALTER TABLE shops ADD COLUMN erasure_salt bytea NOT NULL
    DEFAULT uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
CREATE TABLE erased_ids (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    -- sha256(salt || 'c' or 'o' || int8send(id)): a customer's or an order's.
    digest bytea NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, digest)
);

-- Shops erased by shop/redact: their events still in Kafka are dropped, not dead-lettered
-- (a dead letter would keep their customers' payloads). The row stays when the domain is
-- registered again: events received before `redacted_at` were the erased shop's.
CREATE TABLE redacted_shops (
    domain text PRIMARY KEY,
    redacted_at timestamptz NOT NULL
);

-- customers/data_request: the shop fetches the export through the API
-- (GET /v1/customers/{id}/export); the row says a request is waiting and when it was served.
CREATE TABLE data_requests (
    id bigserial PRIMARY KEY,
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    -- Shopify's data_request.id, when the payload carries one.
    shopify_request_id bigint,
    -- orders_requested: the export includes them (a guest order names no customer).
    order_ids bigint[] NOT NULL DEFAULT '{}',
    requested_at timestamptz NOT NULL,
    exported_at timestamptz
);
CREATE INDEX data_requests_by_customer ON data_requests (shop_id, customer_id);

-- That a privacy request was carried out, and when, with no personal data: no customer id,
-- no domain. Outlives the shop on purpose (no foreign key).
CREATE TABLE privacy_log (
    id bigserial PRIMARY KEY,
    kind text NOT NULL
        CHECK (kind IN ('customer_redacted', 'shop_redacted', 'data_requested', 'data_exported')),
    shop_id bigint NOT NULL,
    rows_erased integer,
    at timestamptz NOT NULL DEFAULT now()
);

-- The dedupe tables keep a digest of each event id (services/segmenter/storage/queries.py
-- dedupe_id), not the id: the importer's ids carry customer and order ids, custom events' are
-- whatever the client chose, and these rows outlive an erasure.
UPDATE processed_events SET event_id = left(encode(sha256(convert_to(event_id, 'UTF8')), 'hex'), 32);
UPDATE processed_engagement_events
SET event_id = left(encode(sha256(convert_to(event_id, 'UTF8')), 'hex'), 32);
