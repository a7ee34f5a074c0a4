-- Bulk tag operations the tagger started and stopped polling before they ended (issue 13).
-- The operation still runs on Shopify: its result is read by a later poll, and its lines are
-- recorded then, rather than sent again one by one (which would tag every customer twice).
CREATE TABLE tag_bulk_operations (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    operation_id text NOT NULL,
    -- 'add' or 'remove': which mutation the operation runs.
    kind text NOT NULL CHECK (kind IN ('add', 'remove')),
    -- The input lines in order, [[customer_id, [tag, ...]], ...]: the result file names lines
    -- by number only.
    lines jsonb NOT NULL,
    started_at timestamptz NOT NULL,
    -- When the next poll is due (the bulk lane of the shop waits until the operation ended).
    poll_at timestamptz NOT NULL,
    PRIMARY KEY (shop_id, operation_id)
);

-- Each shop's lane takes its own due work (the reconciler runs one task per shop and lane).
CREATE INDEX tag_work_shop_due ON tag_work (shop_id, bulk, due_at);
