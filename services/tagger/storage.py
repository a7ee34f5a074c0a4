"""Named queries over the tagger's tables (migrations 0006 and 0010); every value is a bound
parameter."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.tagger.tags import Entry

Key = tuple[int, int]

# A mark only says "look at this customer again"; its version tells the reconciler whether
# another change came in while it worked.
MARK_TAG_WORK = """
INSERT INTO tag_work (shop_id, customer_id, bulk)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[])
ORDER BY 1, 2
ON CONFLICT (shop_id, customer_id) DO UPDATE
SET version = tag_work.version + 1,
    -- Live work is not held back by a bulk mark, nor by the backoff of an earlier failure.
    bulk = tag_work.bulk AND EXCLUDED.bulk,
    due_at = LEAST(tag_work.due_at, now()),
    marked_at = now()
"""
# A lease rather than a row lock held across Shopify's answers: a reconciler that dies gives
# the row back when the lease ends. One shop's lane at a time: each shop's task takes its own
# work, so a slow shop never holds another's.
TAKE_SHOP_TAG_WORK = """
UPDATE tag_work w SET leased_until = $4
FROM (
    SELECT shop_id, customer_id FROM tag_work
    WHERE bulk = $1 AND due_at <= $2 AND (leased_until IS NULL OR leased_until < $2)
      AND shop_id = $5
    ORDER BY due_at, customer_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) t
WHERE w.shop_id = t.shop_id AND w.customer_id = t.customer_id
RETURNING w.shop_id, w.customer_id, w.version, w.attempts
"""
# The (shop, lane) pairs with work due and not leased: what the run loop hands to shop tasks.
DUE_LANES = """
SELECT DISTINCT shop_id, bulk FROM tag_work
WHERE due_at <= $1 AND (leased_until IS NULL OR leased_until < $1)
UNION
SELECT shop_id, true FROM tag_bulk_operations WHERE poll_at <= $1
"""
# A live holder keeps its lease while Shopify works (a bulk operation can take minutes): only
# rows still under the lease it set are extended, so a lease another took over is left alone.
RENEW_LEASE = """
UPDATE tag_work w SET leased_until = $4
FROM unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
WHERE w.shop_id = k.shop_id AND w.customer_id = k.customer_id AND w.leased_until = $3
"""
FINISH_TAG_WORK = """
DELETE FROM tag_work w
USING unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d (shop_id, customer_id, version)
WHERE w.shop_id = d.shop_id AND w.customer_id = d.customer_id AND w.version = d.version
RETURNING w.shop_id, w.customer_id
"""
QUEUED = """
SELECT w.shop_id, w.customer_id FROM tag_work w
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON w.shop_id = k.shop_id AND w.customer_id = k.customer_id
"""
# Marked again while we worked: due now, the lease given back.
RELEASE_TAG_WORK = """
UPDATE tag_work w SET leased_until = NULL
FROM unnest($1::bigint[], $2::bigint[]) AS d (shop_id, customer_id)
WHERE w.shop_id = d.shop_id AND w.customer_id = d.customer_id
"""
RETRY_TAG_WORK = """
UPDATE tag_work SET leased_until = NULL, attempts = attempts + 1, due_at = $3,
    last_error = $4, parked_at = CASE WHEN $5 THEN COALESCE(parked_at, now()) END
WHERE shop_id = $1 AND customer_id = $2
"""
# The actions of the segments each customer is in now.
WANTED_ACTIONS = """
SELECT m.shop_id, m.customer_id, s.actions
FROM memberships m
JOIN segments s ON s.id = m.segment_id
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON m.shop_id = k.shop_id AND m.customer_id = k.customer_id
ORDER BY s.handle
"""
LEDGER = """
SELECT l.* FROM tag_ledger l
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON l.shop_id = k.shop_id AND l.customer_id = k.customer_id
"""
UPSERT_LEDGER = """
INSERT INTO tag_ledger (shop_id, customer_id, tag_key, tag, state, changed_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
    $6::timestamptz[])
ON CONFLICT (shop_id, customer_id, tag_key) DO UPDATE
SET tag = EXCLUDED.tag, state = EXCLUDED.state, changed_at = EXCLUDED.changed_at
"""
DELETE_LEDGER = """
DELETE FROM tag_ledger l
USING unnest($1::bigint[], $2::bigint[], $3::text[]) AS d (shop_id, customer_id, tag_key)
WHERE l.shop_id = d.shop_id AND l.customer_id = d.customer_id AND l.tag_key = d.tag_key
"""
# Failed lines of a bulk run go to the single path, due now (not counted as an attempt).
TO_SINGLE_LANE = """
UPDATE tag_work SET bulk = false, leased_until = NULL, due_at = now(), last_error = $3
WHERE shop_id = $1 AND customer_id = $2
"""
# Late bulk operations (migration 0010): recorded when polling gave up, read again later.
SAVE_BULK_OPERATION = """
INSERT INTO tag_bulk_operations (shop_id, operation_id, kind, lines, started_at, poll_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (shop_id, operation_id) DO UPDATE SET poll_at = EXCLUDED.poll_at
"""
BULK_OPERATIONS = """
SELECT operation_id, kind, lines, started_at, poll_at FROM tag_bulk_operations
WHERE shop_id = $1 ORDER BY started_at, operation_id
"""
BULK_OPERATION_POLL_LATER = """
UPDATE tag_bulk_operations SET poll_at = $3 WHERE shop_id = $1 AND operation_id = $2
"""
# Waiting on a late bulk operation: back in the lane, due when it is looked at again.
# A row marked again since it was taken (a live change) is due now instead: it waits for
# nothing of the bulk batch's.
PUT_BACK = """
UPDATE tag_work w SET leased_until = NULL,
    due_at = CASE WHEN w.version = k.version THEN $4 ELSE now() END
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k (shop_id, customer_id, version)
WHERE w.shop_id = k.shop_id AND w.customer_id = k.customer_id
"""
# Customers among these whose tags a late bulk operation of the shop is still writing.
IN_LATE_BULK = """
SELECT DISTINCT (line ->> 0)::bigint AS customer_id, min(o.poll_at) AS poll_at
FROM tag_bulk_operations o, jsonb_array_elements(o.lines) AS line
WHERE o.shop_id = $1 AND (line ->> 0)::bigint = ANY($2::bigint[])
GROUP BY 1
"""
DUE_NOW = """
UPDATE tag_work w SET due_at = LEAST(w.due_at, now())
FROM unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
WHERE w.shop_id = k.shop_id AND w.customer_id = k.customer_id
"""
DROP_BULK_OPERATION = """
DELETE FROM tag_bulk_operations WHERE shop_id = $1 AND operation_id = $2
"""
# customers/redact: the customer's ledger and queued work go; in a late bulk operation its
# line stays (the result file names lines by number) with the customer id 0, which no customer
# has, so settling the operation writes nothing for it.
ERASE_LEDGER = "DELETE FROM tag_ledger WHERE shop_id = $1 AND customer_id = $2"
ERASE_TAG_WORK = "DELETE FROM tag_work WHERE shop_id = $1 AND customer_id = $2"
ERASE_BULK_LINES = """
UPDATE tag_bulk_operations o SET lines = (
    SELECT jsonb_agg(
        CASE WHEN (line ->> 0)::bigint = $2 THEN jsonb_build_array(0, line -> 1) ELSE line END
        ORDER BY n)
    FROM jsonb_array_elements(o.lines) WITH ORDINALITY AS l (line, n)
)
WHERE o.shop_id = $1 AND EXISTS (
    SELECT 1 FROM jsonb_array_elements(o.lines) AS line WHERE (line ->> 0)::bigint = $2
)
"""
# The tags Shopify's webhooks last told the segmenter (profile.tags: tag -> [present, at]).
KNOWN_TAGS = """
SELECT c.shop_id, c.customer_id, c.profile -> 'tags' AS tags FROM customers c
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON c.shop_id = k.shop_id AND c.customer_id = k.customer_id
"""
PARKED = """
SELECT customer_id, attempts, parked_at, last_error, due_at FROM tag_work
WHERE shop_id = $1 AND parked_at IS NOT NULL ORDER BY parked_at, customer_id LIMIT $2
"""
PENDING = """
SELECT customer_id, bulk, attempts, due_at, marked_at, last_error FROM tag_work
WHERE shop_id = $1 ORDER BY due_at, customer_id LIMIT $2
"""
# The journeys' totals for the gauges (metrics.py): cheap enough per round at these sizes
# (the enrolments' due index serves the backlog).
JOURNEY_TOTALS = """
SELECT 'enrolments' AS kind, state, grp AS label, count(*) AS n
FROM journey_enrolments GROUP BY state, grp
UNION ALL
SELECT 'sends', state, '', count(*) FROM journey_sends GROUP BY state
UNION ALL
SELECT 'due', '', '', count(*) FROM journey_enrolments
WHERE state = 'active' AND next_due_at <= $1
UNION ALL
SELECT 'conversions', '', e.grp, count(*) FROM journey_conversions c
JOIN journey_enrolments e ON e.id = c.enrolment_id GROUP BY e.grp
"""
BACKLOG = """
SELECT bulk, count(*) AS due, count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked
FROM tag_work GROUP BY bulk
"""


@dataclass(frozen=True)
class Work:
    """One customer taken from the queue: the version it had when taken."""

    shop_id: int
    customer_id: int
    version: int
    attempts: int

    @property
    def key(self) -> Key:
        return (self.shop_id, self.customer_id)


def _columns(keys: Iterable[Key]) -> tuple[list[int], list[int]]:
    ordered = sorted(set(keys))
    return [k[0] for k in ordered], [k[1] for k in ordered]


async def mark_tag_work(conn: asyncpg.Connection, marks: Mapping[Key, bool]) -> None:
    """Queue these customers for a look at their tags (value: whether it is bulk work)."""
    if not marks:
        return
    keys = sorted(marks)
    await conn.execute(
        MARK_TAG_WORK, [k[0] for k in keys], [k[1] for k in keys], [marks[k] for k in keys]
    )


async def take_shop_tag_work(
    conn: asyncpg.Connection,
    shop_id: int,
    bulk: bool,
    now: datetime,
    limit: int,
    lease_until: datetime,
) -> list[Work]:
    """Lease up to `limit` due customers of one shop's lane."""
    rows = await conn.fetch(TAKE_SHOP_TAG_WORK, bulk, now, limit, lease_until, shop_id)
    return [Work(r["shop_id"], r["customer_id"], r["version"], r["attempts"]) for r in rows]


async def due_lanes(conn: asyncpg.Connection, now: datetime) -> set[tuple[int, bool]]:
    """The (shop, bulk?) lanes that have work due and free."""
    return {(r["shop_id"], r["bulk"]) for r in await conn.fetch(DUE_LANES, now)}


async def renew_lease(
    conn: asyncpg.Connection, works: Sequence[Work], held_until: datetime, until: datetime
) -> None:
    """Extend our lease (the one ending at `held_until`) on these rows to `until`."""
    await conn.execute(RENEW_LEASE, *_columns(w.key for w in works), held_until, until)


@dataclass(frozen=True)
class LateBulk:
    """A bulk operation still running on Shopify when polling gave up."""

    shop_id: int
    operation_id: str
    kind: str
    lines: list[tuple[int, list[str]]]
    started_at: datetime
    poll_at: datetime


async def save_bulk_operation(
    conn: asyncpg.Connection,
    shop_id: int,
    late: LateBulk,
) -> None:
    """Remember a late bulk operation so a later poll reads its result."""
    lines = orjson.dumps([[c, list(t)] for c, t in late.lines]).decode()
    await conn.execute(
        SAVE_BULK_OPERATION,
        shop_id,
        late.operation_id,
        late.kind,
        lines,
        late.started_at,
        late.poll_at,
    )


async def bulk_operations(conn: asyncpg.Connection, shop_id: int) -> list[LateBulk]:
    """The shop's late bulk operations, oldest first."""
    found = []
    for row in await conn.fetch(BULK_OPERATIONS, shop_id):
        raw = row["lines"]
        lines = orjson.loads(raw) if isinstance(raw, str) else raw
        found.append(
            LateBulk(
                shop_id,
                row["operation_id"],
                row["kind"],
                [(int(c), list(t)) for c, t in lines],
                row["started_at"],
                row["poll_at"],
            )
        )
    return found


async def poll_bulk_later(
    conn: asyncpg.Connection, shop_id: int, operation_id: str, at: datetime
) -> None:
    """The operation still runs: look again at `at`."""
    await conn.execute(BULK_OPERATION_POLL_LATER, shop_id, operation_id, at)


async def put_back(conn: asyncpg.Connection, works: Sequence[Work], due_at: datetime) -> None:
    """Give the lease back, the work due at `due_at` (no attempt counted); work marked again
    since it was taken is due now."""
    await conn.execute(
        PUT_BACK,
        [w.shop_id for w in works],
        [w.customer_id for w in works],
        [w.version for w in works],
        due_at,
    )


async def in_late_bulk(
    conn: asyncpg.Connection, shop_id: int, customer_ids: Sequence[int]
) -> dict[int, datetime]:
    """Which of these customers a late bulk operation still writes, and when it is looked at
    next."""
    rows = await conn.fetch(IN_LATE_BULK, shop_id, list(customer_ids))
    return {row["customer_id"]: row["poll_at"] for row in rows}


async def due_now(conn: asyncpg.Connection, keys: Iterable[Key]) -> None:
    """Make any queued work of these customers due now."""
    await conn.execute(DUE_NOW, *_columns(keys))


async def drop_bulk_operation(conn: asyncpg.Connection, shop_id: int, operation_id: str) -> None:
    """The operation ended and its result was recorded."""
    await conn.execute(DROP_BULK_OPERATION, shop_id, operation_id)


async def finish_tag_work(conn: asyncpg.Connection, done: Sequence[Work]) -> None:
    """Drop the work done; a customer marked again meanwhile, or whose lease another
    reconciler took over, is queued again, due now."""
    if not done:
        return
    deleted = await conn.fetch(
        FINISH_TAG_WORK,
        [w.shop_id for w in done],
        [w.customer_id for w in done],
        [w.version for w in done],
    )
    finished = {(r["shop_id"], r["customer_id"]) for r in deleted}
    unfinished = [w.key for w in done if w.key not in finished]
    if not unfinished:
        return
    # Marked again meanwhile: still queued (in its lane), due now, the lease given back.
    await conn.execute(RELEASE_TAG_WORK, *_columns(unfinished))
    # Gone: another reconciler took the row after our lease ran out and finished it, on a
    # reading that may be older or newer than our write. Another look settles it.
    kept = {
        (r["shop_id"], r["customer_id"]) for r in await conn.fetch(QUEUED, *_columns(unfinished))
    }
    await mark_tag_work(conn, {key: False for key in unfinished if key not in kept})


async def retry_tag_work(
    conn: asyncpg.Connection, work: Work, due_at: datetime, error: str, parked: bool
) -> None:
    """Put the work back for later, counting the attempt (parked: past the retry bound)."""
    await conn.execute(RETRY_TAG_WORK, work.shop_id, work.customer_id, due_at, error[:500], parked)


async def move_to_single_lane(conn: asyncpg.Connection, work: Work, error: str) -> None:
    """Send a customer whose bulk line failed through the single path, now."""
    await conn.execute(TO_SINGLE_LANE, work.shop_id, work.customer_id, error[:500])


async def known_tags(conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, list[str]]:
    """The tags each customer has on Shopify as far as its webhooks said (ours included)."""
    found: dict[Key, list[str]] = {}
    for row in await conn.fetch(KNOWN_TAGS, *_columns(keys)):
        raw = row["tags"]
        stamps = orjson.loads(raw) if isinstance(raw, str) else (raw or {})
        found[(row["shop_id"], row["customer_id"])] = [
            tag for tag, stamp in stamps.items() if stamp and stamp[0]
        ]
    return found


async def wanted_actions(
    conn: asyncpg.Connection, keys: Iterable[Key]
) -> dict[Key, list[list[dict[str, Any]]]]:
    """The actions of the segments each customer is in (customers in none are absent)."""
    found: dict[Key, list[list[dict[str, Any]]]] = {}
    for row in await conn.fetch(WANTED_ACTIONS, *_columns(keys)):
        actions = row["actions"]
        if isinstance(actions, str):
            actions = orjson.loads(actions)
        found.setdefault((row["shop_id"], row["customer_id"]), []).append(actions or [])
    return found


async def ledgers(conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, dict[str, Entry]]:
    """The tag ledger of each customer, by tag key."""
    found: dict[Key, dict[str, Entry]] = {}
    for row in await conn.fetch(LEDGER, *_columns(keys)):
        entry = Entry(row["tag"], row["state"], row["changed_at"])
        found.setdefault((row["shop_id"], row["customer_id"]), {})[row["tag_key"]] = entry
    return found


async def erase_customer(conn: asyncpg.Connection, shop_id: int, customer_id: int) -> int:
    """customers/redact: the customer's ledger, queued work and bulk lines; rows changed."""
    changed = 0
    for statement in (ERASE_LEDGER, ERASE_TAG_WORK, ERASE_BULK_LINES):
        status = await conn.execute(statement, shop_id, customer_id)
        changed += int(status.split()[-1])
    return changed


async def write_ledger(
    conn: asyncpg.Connection, entries: Mapping[Key, Mapping[str, Entry | None]]
) -> None:
    """Write ledger entries (None: delete the entry), one statement each way."""
    upserts: tuple[list[Any], ...] = ([], [], [], [], [], [])
    deletes: tuple[list[Any], ...] = ([], [], [])
    for (shop_id, customer_id), by_key in sorted(entries.items()):
        for tag_key, entry in sorted(by_key.items()):
            if entry is None:
                for column, value in zip(deletes, (shop_id, customer_id, tag_key), strict=True):
                    column.append(value)
            else:
                values = (shop_id, customer_id, tag_key, entry.tag, entry.state, entry.changed_at)
                for column, value in zip(upserts, values, strict=True):
                    column.append(value)
    if upserts[0]:
        await conn.execute(UPSERT_LEDGER, *upserts)
    if deletes[0]:
        await conn.execute(DELETE_LEDGER, *deletes)
