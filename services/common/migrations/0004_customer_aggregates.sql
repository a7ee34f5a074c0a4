-- Per-customer order aggregates (services/segmenter/domain/aggregates.py), kept incrementally
-- so a batch reads and writes one row per touched customer and only the orders its events
-- name, instead of every earlier order. NULL: not built yet; the segmenter builds it from the
-- stored orders (the same code that recomputes facts) the first time it evaluates the customer.
ALTER TABLE customers ADD COLUMN aggregates jsonb;

-- What each order last added to its owner's aggregates, so a change to the order takes
-- exactly that back out. NULL on rows written before this migration (and for orders nobody
-- holds): their owners' aggregates are NULL too, and building those fills it.
ALTER TABLE orders ADD COLUMN contribution jsonb;

-- Fill the aggregates of the customers stored before this migration: make them due, so the
-- scheduler builds them (in bounded batches, from their stored orders) and re-evaluates them
-- with the same facts. The facts columns stay valid until then.
UPDATE customers SET next_eval_at = now()
WHERE next_eval_at IS NULL OR next_eval_at > now();
