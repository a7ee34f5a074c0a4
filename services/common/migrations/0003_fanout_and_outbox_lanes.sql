-- Products whose type or vendor changed. Their buyers are made due by the scheduler in a
-- transaction of its own, so an event batch never locks customers outside its own batch
-- (locking a product's buyers there crossed with another batch's customers: a deadlock).
CREATE TABLE product_fanout (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    product_id bigint NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, product_id)
);

-- Ids of engagement events (custom/page_viewed, …), kept far longer than other event ids:
-- their counters are keyed by nothing else. A table of their own, so purging either table
-- only ever reads the rows it deletes.
CREATE TABLE processed_engagement_events (
    shop_id bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    topic text NOT NULL,
    event_id text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, topic, event_id)
);
CREATE INDEX processed_engagement_events_age ON processed_engagement_events (processed_at);

-- Outbox lanes: changes from bulk work (a backfill over a whole store, an import, a deleted
-- segment's exits) are published after the live ones (events, time), so a customer's order
-- entering VIP is not stuck behind 100k backfill rows. A customer's own changes still leave
-- in seq order: the publisher takes a customer's earlier bulk rows along with a live one.
-- The lane is read off `cause` (services/segmenter/outbox.py names the bulk causes), so the
-- table is not rewritten.
DROP INDEX segment_changes_unpublished;
CREATE INDEX segment_changes_unpublished_live ON segment_changes (seq)
    WHERE published_at IS NULL AND cause NOT IN ('backfill', 'import', 'segment_deleted');
CREATE INDEX segment_changes_unpublished_bulk ON segment_changes (seq)
    WHERE published_at IS NULL AND cause IN ('backfill', 'import', 'segment_deleted');
CREATE INDEX segment_changes_unpublished_by_customer ON segment_changes (shop_id, customer_id, seq)
    WHERE published_at IS NULL;
-- Published changes are purged after the outbox retention.
CREATE INDEX segment_changes_published ON segment_changes (published_at)
    WHERE published_at IS NOT NULL;

-- A shop's outbox rows go with the shop: rows of a deleted shop left unpublished at the head
-- of the outbox would otherwise fill every publish (they join no shop) and stop it for all.
DELETE FROM segment_changes c WHERE NOT EXISTS (SELECT 1 FROM shops s WHERE s.id = c.shop_id);
ALTER TABLE segment_changes ADD CONSTRAINT segment_changes_shop_id_fkey
    FOREIGN KEY (shop_id) REFERENCES shops (id) ON DELETE CASCADE;
