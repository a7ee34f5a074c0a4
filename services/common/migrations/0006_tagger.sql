-- The tagger (services/tagger/): each shop's Shopify Admin API connection, the ledger of the
-- tags segflow wrote, and the queue of customers whose tags need another look.

-- `segflow shops connect`: the Admin API access token, sealed (AES-GCM under a key from the
-- environment, named by key_id so keys can rotate); never returned by any endpoint.
CREATE TABLE shop_connections (
    shop_id bigint PRIMARY KEY REFERENCES shops (id) ON DELETE CASCADE,
    admin_token_sealed bytea NOT NULL,
    key_id text NOT NULL,
    api_version text NOT NULL,
    -- NULL: Shopify itself (https://{domain}/admin/api/{version}/graphql.json); set for the
    -- local stand-in.
    admin_url text,
    -- A managed tag someone removes by hand stays off that customer (see tags.py).
    respect_manual_removals boolean NOT NULL DEFAULT true,
    -- The webhook topics registered at connect time, as Shopify reported them.
    webhook_topics text[] NOT NULL DEFAULT '{}',
    connected_at timestamptz NOT NULL DEFAULT now()
);

-- One row per tag segflow has dealt with for a customer (services/tagger/tags.py states).
CREATE TABLE tag_ledger (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    tag_key text NOT NULL,
    tag text NOT NULL,
    state text NOT NULL
        CHECK (state IN ('adding', 'added', 'removing', 'removed', 'merchant', 'overridden')),
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (shop_id, customer_id, tag_key)
);

-- Customers whose managed tags may differ from what their memberships want. A change only
-- marks the customer (so a burst of changes costs one look); the reconciler reads the
-- memberships and the ledger when it takes the row, so order and duplicates do not matter.
CREATE TABLE tag_work (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    -- Bumped by every mark; the reconciler deletes the row only if it did not move meanwhile.
    version bigint NOT NULL DEFAULT 1,
    -- Bulk causes (import, backfill, segment deleted) go to the bulk lane.
    bulk boolean NOT NULL DEFAULT false,
    due_at timestamptz NOT NULL DEFAULT now(),
    -- A reconciler holds the row until then; another may take it after (a crashed one).
    leased_until timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    -- Set once the retries reached their bound: still retried, less often, and shown.
    parked_at timestamptz,
    last_error text,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, customer_id)
);
CREATE INDEX tag_work_due ON tag_work (bulk, due_at);
