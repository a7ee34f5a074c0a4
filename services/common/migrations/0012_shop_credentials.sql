-- A shop's credentials by power, each kind rotatable with a grace period (README "Keys and
-- who holds them"). One table is the only source of truth: the old columns on shops go.
--   admin    everything of its shop (today's API token, hash kept as it was)
--   read     GET /v1/customers/{id}/segments only
--   events   POST /v1/events and /v1/events/batch only
--   flow     /webhooks/flow (X-Segflow-Flow-Secret)
--   webhook  Shopify's HMAC key, in clear: verifying a signature needs it
-- expires_at NULL is the current secret of its kind; a rotated one keeps working until its
-- expires_at (the grace), then no longer.
CREATE TABLE shop_credentials (
    id bigserial PRIMARY KEY,
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('admin', 'read', 'events', 'flow', 'webhook')),
    -- Tokens are random and high-entropy: a SHA-256 of them suffices.
    token_hash bytea,
    webhook_secret text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    CHECK (
        CASE kind
            WHEN 'webhook' THEN webhook_secret IS NOT NULL AND token_hash IS NULL
            ELSE token_hash IS NOT NULL AND webhook_secret IS NULL
        END
    )
);
-- A token names one credential, whatever its kind or shop.
CREATE UNIQUE INDEX shop_credentials_token ON shop_credentials (token_hash)
    WHERE token_hash IS NOT NULL;
-- One current secret per kind and shop.
CREATE UNIQUE INDEX shop_credentials_current ON shop_credentials (shop_id, kind)
    WHERE expires_at IS NULL;
CREATE INDEX shop_credentials_by_shop ON shop_credentials (shop_id, kind, expires_at);

INSERT INTO shop_credentials (shop_id, kind, token_hash, created_at)
SELECT id, 'admin', api_token_hash, created_at FROM shops;
INSERT INTO shop_credentials (shop_id, kind, token_hash, created_at)
SELECT id, 'flow', flow_secret_hash, created_at FROM shops;
INSERT INTO shop_credentials (shop_id, kind, webhook_secret, created_at)
SELECT id, 'webhook', webhook_secret, created_at FROM shops;

ALTER TABLE shops
    DROP COLUMN webhook_secret,
    DROP COLUMN api_token_hash,
    DROP COLUMN flow_secret_hash;
