-- Change ids become time-ordered (UUID version 7, PostgreSQL 18): each new outbox row lands
-- at the right edge of the primary key's index instead of on a random page, so the insert
-- cost does not grow with the rows the outbox retains. Ids already written keep their value;
-- consumers only compare them for equality.
ALTER TABLE segment_changes ALTER COLUMN change_id SET DEFAULT uuidv7();
