-- An import evaluates the buyers of the products it changed itself, at its end, as bulk
-- changes. It queues those products here too, held until `held_until`, so a stopped import
-- loses none of them: the next import of the shop takes them over, and once the hold runs
-- out the scheduler fans them out like any other.
ALTER TABLE product_fanout ADD COLUMN held_until timestamptz;
