"""A segment's backfill in chunks of customers, each chunk a short transaction of its own.

Why this is correct while the shop's events keep flowing (what it replaces held the shop's
exclusive lock for the whole backfill, ~13 s for 1M customers, and with it every batch that
held one of the shop's events, other shops' events of that batch included):

1. The version change is an instant. An edit takes the shop's exclusive lock only to write the
   segment's row (a new version, `backfill_version` = that version, cursor reset, a new
   `backfill_owner`) and commits. Every batch that read the old version held the shared lock,
   so it had finished; every batch after reads the new version (read committed, after its
   shared lock). No batch ever evaluates a version older than the stored one.
2. A chunk holds the SHARED shop lock, so no edit can commit while it runs: the version it
   checks at its start (the segment row, locked FOR NO KEY UPDATE, which membership inserts'
   foreign-key checks do not wait for) stays the version until it commits. A chunk whose
   segment is gone, or whose owner, version or `backfill_version` is no longer its own (a
   newer edit restarts the backfill from the start; a delete turns it into the exits' run;
   another runner took it over), writes nothing and stops.
3. A chunk locks its customers (the next `chunk` ids after the cursor) in key order, the
   order every writer locks customers in (see queries.LOCK_CUSTOMERS), after the shop lock,
   as batches do: it cannot deadlock with a batch or the scheduler. Under those row locks it
   evaluates the version's compiled SQL WHERE clause over the stored facts and diffs against
   the current memberships, as the one statement did. A batch that evaluated the segment for
   one of these customers first, with the new version, wrote the same membership (the three
   evaluators agree on the stored facts): the diff is empty, so no change row is written
   twice. A batch that kept the customer's old result (the rule reads no fact that changed)
   leaves the chunk that difference to write, once. A later batch sees the chunk's
   memberships, which are the new version's. The chunk evaluates at its own time, read under
   those row locks (`BackfillOptions.clock`): at the edit's time, a time-reading rule could
   flip back what a batch decided at a later time since.
4. Customers the chunk does not reach are either beyond the cursor (a later chunk), or created
   after the version change by a batch, which evaluated them against the new version in full
   (a customer never evaluated has every segment evaluated).
5. Progress (`backfill_after`, the last customer id done) commits with the chunk, so a backfill
   whose runner died is resumed from the cursor: the runner's lease
   (`backfill_lease_until`, pushed on by every chunk) runs out and the segmenter claims it.
   Two runners never both write a chunk: each checks its own `backfill_owner` under the
   segment row's lock.

Deleting is the same run with a rule that matches nobody: after the instant that marks the
segment `deleting` (batches no longer see it, and ignore its memberships), each chunk writes
the exits of its customers (cause `segment_deleted`) and the last one deletes the row.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.common.envelope import loads_json
from services.segmenter.domain.rules.compile_sql import compile_where
from services.segmenter.domain.rules.schedule import reads_time
from services.segmenter.storage import queries

DEFAULT_CHUNK = 5000
DEFAULT_LEASE_SECONDS = 60.0

SEGMENT_FOR_CHUNK = """
SELECT handle, version, conditions, deleting, backfill_version, backfill_after, backfill_owner
FROM segments WHERE shop_id = $1 AND id = $2
FOR NO KEY UPDATE
"""
# Locks rows as the index scan returns them, in key order (the order every writer uses).
CHUNK_FROM_START = """
SELECT customer_id FROM customers WHERE shop_id = $1
ORDER BY customer_id LIMIT $2
FOR UPDATE
"""
CHUNK_AFTER = """
SELECT customer_id FROM customers WHERE shop_id = $1 AND customer_id > $3
ORDER BY customer_id LIMIT $2
FOR UPDATE
"""
_CHUNK = """
WITH matched AS (
    SELECT customer_id FROM customers
    WHERE shop_id = $1 AND customer_id = ANY($6::bigint[]) AND NOT deleted AND ({where})
), entered AS (
    INSERT INTO memberships (shop_id, segment_id, customer_id, since)
    SELECT $1, $2, customer_id, $5 FROM matched
    ON CONFLICT DO NOTHING
    RETURNING customer_id
), exited AS (
    DELETE FROM memberships m
    WHERE m.segment_id = $2 AND m.customer_id = ANY($6::bigint[])
      AND NOT EXISTS (SELECT 1 FROM matched WHERE matched.customer_id = m.customer_id)
    RETURNING customer_id
), changes AS (
    INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle,
        segment_version, change, cause, changed_at)
    SELECT $1::bigint, customer_id, $2::bigint, $3::text, $4::int, 'entered', $7::text,
        $5::timestamptz
    FROM (SELECT customer_id FROM entered ORDER BY customer_id) AS e
    UNION ALL
    SELECT $1::bigint, customer_id, $2::bigint, $3::text, $4::int, 'exited', $7::text,
        $5::timestamptz
    FROM (SELECT customer_id FROM exited ORDER BY customer_id) AS x
    RETURNING change
)
SELECT count(*) FILTER (WHERE change = 'entered') AS entered,
       count(*) FILTER (WHERE change = 'exited') AS exited
FROM changes
"""
# Members beyond the cursor with no customer row (a redaction erases both together, so none
# are expected) exit at the end, so the membership is exactly the rule's. A customer created
# since the last chunk has a row: its batch evaluated it against this version.
_ORPHANS = """
WITH exited AS (
    DELETE FROM memberships m
    WHERE m.segment_id = $2 AND ($6::bigint IS NULL OR m.customer_id > $6)
      AND NOT EXISTS (
          SELECT 1 FROM customers c WHERE c.shop_id = $1 AND c.customer_id = m.customer_id
      )
    RETURNING customer_id
)
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle,
    segment_version, change, cause, changed_at)
SELECT $1::bigint, customer_id, $2::bigint, $3::text, $4::int, 'exited', $7::text,
    $5::timestamptz
FROM exited
"""
# Re-evaluated by the scheduler soon, so each customer's next_eval_at accounts for the rule.
RESCHEDULE_CHUNK = """
UPDATE customers SET next_eval_at = $3
WHERE shop_id = $1 AND customer_id = ANY($2::bigint[]) AND NOT deleted
  AND (next_eval_at IS NULL OR next_eval_at > $3)
"""
ADVANCE = """
UPDATE segments SET backfill_after = $3,
    backfill_lease_until = clock_timestamp() + make_interval(secs => $4)
WHERE shop_id = $1 AND id = $2
"""
FINISH = """
UPDATE segments SET backfill_version = NULL, backfill_after = NULL, backfill_owner = NULL,
    backfill_lease_until = NULL
WHERE shop_id = $1 AND id = $2
"""
RELEASE = """
UPDATE segments SET backfill_lease_until = clock_timestamp()
WHERE shop_id = $1 AND id = $2 AND backfill_owner = $3
"""
DELETE_SEGMENT = "DELETE FROM segments WHERE shop_id = $1 AND id = $2"
# The columns an edit sets, in the same statement as the version: the backfill starts over.
RESTART = """backfill_version = {version}, backfill_after = NULL,
    backfill_owner = gen_random_uuid(),
    backfill_lease_until = clock_timestamp() + make_interval(secs => {lease})"""
# A backfill whose runner stopped renewing its lease; SKIP LOCKED: a chunk is running on it.
CLAIM_ABANDONED = """
UPDATE segments s SET backfill_owner = gen_random_uuid(),
    backfill_lease_until = clock_timestamp() + make_interval(secs => $1)
FROM (
    SELECT id FROM segments
    WHERE backfill_version IS NOT NULL AND backfill_lease_until < clock_timestamp()
    ORDER BY backfill_lease_until
    LIMIT 1
    FOR NO KEY UPDATE SKIP LOCKED
) AS due
WHERE s.id = due.id
RETURNING s.shop_id, s.id, s.backfill_version, s.backfill_owner
"""


@dataclass(frozen=True)
class Claim:
    """The right to run one segment version's backfill; a chunk of any other claim stops."""

    shop_id: int
    segment_id: int
    version: int
    owner: UUID


@dataclass(frozen=True)
class BackfillOptions:
    """How a backfill runs: customers per chunk, the lease each chunk renews, a hook awaited
    between chunks (tests pause a backfill there), and the clock each chunk evaluates at."""

    chunk: int = DEFAULT_CHUNK
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    between_chunks: Callable[[], Awaitable[None]] | None = None
    # Read by each chunk once its customers are locked, so a time-reading rule is never
    # evaluated at a time before that of a batch that evaluated them since the edit (at the
    # edit's time, the chunk would undo the batch's result: an exit and a re-entry later).
    # None: the run's `now` throughout.
    clock: Callable[[], datetime] | None = None


@dataclass(frozen=True)
class BackfillResult:
    """Changes this run wrote; `complete` is False when it stopped before the end (superseded
    by a newer edit or a delete, or taken over by another runner)."""

    entered: int
    exited: int
    complete: bool = True


@dataclass(frozen=True)
class _Step:
    entered: int = 0
    exited: int = 0
    done: bool = False
    stopped: bool = False


async def run(
    conn: asyncpg.Connection,
    claim: Claim,
    now: datetime,
    options: BackfillOptions,
    stop: asyncio.Event | None = None,
) -> BackfillResult:
    """Run the claimed backfill to its end (or, with `stop` set, to the chunk in hand), a
    chunk per transaction (savepoints if the caller holds a transaction, which then keeps
    its locks until it ends)."""
    entered = exited = 0
    while True:
        if stop is not None and stop.is_set():
            # Handed back at once: the next runner need not wait for the lease to run out.
            await conn.execute(RELEASE, claim.shop_id, claim.segment_id, claim.owner)
            return BackfillResult(entered, exited, complete=False)
        async with conn.transaction():
            step = await _chunk(conn, claim, now, options)
        entered += step.entered
        exited += step.exited
        if step.done or step.stopped:
            return BackfillResult(entered, exited, complete=step.done)
        if options.between_chunks is not None:
            await options.between_chunks()


async def _chunk(
    conn: asyncpg.Connection, claim: Claim, now: datetime, options: BackfillOptions
) -> _Step:
    await queries.lock_shops_shared(conn, [claim.shop_id])
    row = await conn.fetchrow(SEGMENT_FOR_CHUNK, claim.shop_id, claim.segment_id)
    if (
        row is None
        or row["backfill_owner"] != claim.owner
        or row["backfill_version"] != claim.version
        or row["version"] != claim.version
    ):
        return _Step(stopped=True)
    after: int | None = row["backfill_after"]
    if after is None:
        ids = await conn.fetch(CHUNK_FROM_START, claim.shop_id, options.chunk)
    else:
        ids = await conn.fetch(CHUNK_AFTER, claim.shop_id, options.chunk, after)
    if options.clock is not None:
        now = options.clock()
    conditions: dict[str, Any] = loads_json(row["conditions"])
    deleting: bool = row["deleting"]
    cause = "segment_deleted" if deleting else "backfill"
    head = (claim.shop_id, claim.segment_id, row["handle"], claim.version, now)
    if not ids:
        status = await conn.execute(_ORPHANS, *head, after, cause)
        exited = int(status.split()[-1])
        await conn.execute(DELETE_SEGMENT if deleting else FINISH, *head[:2])
        return _Step(exited=exited, done=True)
    customer_ids = [r["customer_id"] for r in ids]
    params: list[object] = []
    if deleting:
        where = "FALSE"
    else:
        where, params = compile_where(conditions, now_param=5, first_param=8)
    counts = await conn.fetchrow(_CHUNK.format(where=where), *head, customer_ids, cause, *params)
    if not deleting and reads_time(conditions):
        await conn.execute(RESCHEDULE_CHUNK, claim.shop_id, customer_ids, now)
    await conn.execute(
        ADVANCE, claim.shop_id, claim.segment_id, customer_ids[-1], options.lease_seconds
    )
    return _Step(counts["entered"], counts["exited"])


async def claim_abandoned(conn: asyncpg.Connection, lease_seconds: float) -> Claim | None:
    """Claim one backfill whose runner's lease ran out (the API died mid-backfill), if any."""
    row = await conn.fetchrow(CLAIM_ABANDONED, lease_seconds)
    if row is None:
        return None
    return Claim(row["shop_id"], row["id"], row["backfill_version"], row["backfill_owner"])


async def resume_abandoned(
    pool: asyncpg.Pool,
    now: Callable[[], datetime],
    options: BackfillOptions,
    stop: asyncio.Event | None = None,
) -> int:
    """Claim and run every abandoned backfill, one after another; return how many ran.

    With `stop` set it returns after the chunk in hand; the lease then runs out again and
    the next start (or another replica) resumes from the cursor."""
    resumed = 0
    while not (stop is not None and stop.is_set()):
        async with pool.acquire() as conn:
            claim = await claim_abandoned(conn, options.lease_seconds)
            if claim is None:
                break
            await run(conn, claim, now(), options, stop)
        resumed += 1
    return resumed
