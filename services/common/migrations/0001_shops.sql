-- One row per Shopify store using segflow. Every API call and every event is scoped to one shop.
CREATE TABLE shops (
    id bigserial PRIMARY KEY,
    domain text NOT NULL UNIQUE CHECK (domain = lower(domain) AND domain <> ''),
    -- Kept in clear because verifying a webhook means computing the HMAC with it.
    webhook_secret text NOT NULL,
    -- Bearer tokens and the Flow secret are random and high-entropy: a SHA-256 of them suffices.
    api_token_hash bytea NOT NULL UNIQUE,
    flow_secret_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
