-- A segment's backfill runs in chunks of customers, each its own transaction, instead of one
-- statement under the shop's exclusive lock. Its progress lives in the segment's row, so a
-- backfill whose runner died is resumed by the segmenter from where it stopped.
--   backfill_version: the version being backfilled (NULL: membership is complete);
--   backfill_after:   the last customer id done (NULL: none yet);
--   backfill_owner:   the runner's claim; a chunk of any other runner stops;
--   backfill_lease_until: past it, the segmenter may claim the backfill (its runner died);
--   deleting:         deleted: its members' exits are being written, then the row goes.
ALTER TABLE segments
    ADD COLUMN backfill_version integer,
    ADD COLUMN backfill_after bigint,
    ADD COLUMN backfill_owner uuid,
    ADD COLUMN backfill_lease_until timestamptz,
    ADD COLUMN deleting boolean NOT NULL DEFAULT false;
CREATE INDEX segments_backfill_pending ON segments (backfill_lease_until)
    WHERE backfill_version IS NOT NULL;
