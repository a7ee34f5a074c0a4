"""Segments: create, change and delete them, backfilling membership over all stored customers.

The edit itself holds the shop's exclusive lock for one short transaction (the new version);
the backfill then runs in chunks under the shared lock, with events flowing between them.
Why that is correct: services/segmenter/storage/backfill.py.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.common.jsontext import encode_json
from services.segmenter.domain.rules.compile_sql import compile_where
from services.segmenter.domain.rules.templates import builtin_templates
from services.segmenter.storage import queries
from services.segmenter.storage.backfill import (
    RESTART,
    BackfillOptions,
    BackfillResult,
    Claim,
    run,
)

# Every segment of a shop is evaluated for each of its customers in a batch: this bounds that
# work (README, "Bounded evaluation"); SEGFLOW_MAX_SEGMENTS_PER_SHOP changes it for the API.
MAX_SEGMENTS_PER_SHOP = 100

COUNT_SEGMENTS = "SELECT count(*) FROM segments WHERE shop_id = $1"
INSERT_SEGMENT = """
INSERT INTO segments (shop_id, handle, name, description, conditions, actions, template,
    backfill_version, backfill_owner, backfill_lease_until)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7,
    1, gen_random_uuid(), clock_timestamp() + make_interval(secs => $8))
ON CONFLICT (shop_id, handle) DO NOTHING
RETURNING id, version, backfill_owner
"""
UPDATE_SEGMENT = f"""
UPDATE segments SET name = $3, description = $4, conditions = $5::jsonb, actions = $6::jsonb,
    version = version + 1, updated_at = now(),
    {RESTART.format(version="version + 1", lease="$7")}
WHERE shop_id = $1 AND id = $2 AND NOT deleting
RETURNING id, version, backfill_owner
"""
# Batches stop seeing the segment at once; its members' exits are written chunk by chunk.
MARK_DELETING = f"""
UPDATE segments SET deleting = true, updated_at = now(),
    {RESTART.format(version="version", lease="$3")}
WHERE shop_id = $1 AND id = $2 AND NOT deleting
RETURNING version, backfill_owner
"""

# `$2` is the evaluation time; a rule that does not read it still has to name it once.
_COUNT = """
SELECT count(*) FROM customers
WHERE shop_id = $1 AND $2::timestamptz IS NOT NULL AND NOT deleted AND ({where})
"""
_SAMPLE = """
SELECT customer_id FROM customers
WHERE shop_id = $1 AND $2::timestamptz IS NOT NULL AND NOT deleted AND ({where})
ORDER BY customer_id LIMIT {limit}
"""


async def preview(
    conn: asyncpg.Connection,
    shop_id: int,
    conditions: Mapping[str, Any],
    now: datetime,
    sample: int = 20,
) -> tuple[int, list[int]]:
    """How many stored customers an unsaved rule matches now, and a sample of their ids."""
    where, params = compile_where(conditions, now_param=2, first_param=3)
    total = await conn.fetchval(_COUNT.format(where=where), shop_id, now, *params)
    limit = f"${3 + len(params)}"
    rows = await conn.fetch(_SAMPLE.format(where=where, limit=limit), shop_id, now, *params, sample)
    return total, [row["customer_id"] for row in rows]


def to_json(value: Any) -> str:
    """JSON text for a rule or actions column: Decimal values stay JSON numbers."""
    return encode_json(value).decode()


@dataclass(frozen=True)
class SegmentSpec:
    """What a merchant writes: the rest (id, version, times) the database keeps."""

    handle: str
    name: str
    description: str
    conditions: Mapping[str, Any]
    actions: Sequence[Mapping[str, Any]]
    template: str | None = None


class TooManySegmentsError(Exception):
    """The shop has as many segments as it may have."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a shop has at most {limit} segments")
        self.limit = limit


async def create_segment(
    conn: asyncpg.Connection,
    shop_id: int,
    spec: SegmentSpec,
    now: datetime,
    options: BackfillOptions | None = None,
    max_segments: int = MAX_SEGMENTS_PER_SHOP,
) -> tuple[int, BackfillResult] | None:
    """Insert a segment (one short transaction) and backfill it; None if the handle is taken.

    Raises TooManySegmentsError at the shop's limit. Inside a caller's transaction every step
    is a savepoint of it, so nothing is visible (and the lock is held) until it commits.
    """
    options = options or BackfillOptions()
    async with conn.transaction():
        await queries.lock_shop_exclusive(conn, shop_id)
        if await conn.fetchval(COUNT_SEGMENTS, shop_id) >= max_segments:
            raise TooManySegmentsError(max_segments)
        row = await conn.fetchrow(
            INSERT_SEGMENT,
            shop_id,
            spec.handle,
            spec.name,
            spec.description,
            to_json(spec.conditions),
            to_json(spec.actions),
            spec.template,
            options.lease_seconds,
        )
    if row is None:
        return None
    claim = Claim(shop_id, row["id"], row["version"], row["backfill_owner"])
    return row["id"], await run(conn, claim, now, options)


async def update_segment(
    conn: asyncpg.Connection,
    shop_id: int,
    segment_id: int,
    spec: SegmentSpec,
    now: datetime,
    options: BackfillOptions | None = None,
) -> BackfillResult | None:
    """Change a segment (a new version, one short transaction) and backfill it; None if the
    shop has no such segment. A backfill of an older version still running stops."""
    options = options or BackfillOptions()
    async with conn.transaction():
        await queries.lock_shop_exclusive(conn, shop_id)
        row = await conn.fetchrow(
            UPDATE_SEGMENT,
            shop_id,
            segment_id,
            spec.name,
            spec.description,
            to_json(spec.conditions),
            to_json(spec.actions),
            options.lease_seconds,
        )
    if row is None:
        return None
    claim = Claim(shop_id, segment_id, row["version"], row["backfill_owner"])
    return await run(conn, claim, now, options)


async def delete_segment(
    conn: asyncpg.Connection,
    shop_id: int,
    segment_id: int,
    now: datetime,
    options: BackfillOptions | None = None,
) -> int | None:
    """Delete a segment, emitting an exit for every member (in chunks); None if there is no
    such segment. Return how many exits this call wrote."""
    options = options or BackfillOptions()
    async with conn.transaction():
        await queries.lock_shop_exclusive(conn, shop_id)
        row = await conn.fetchrow(MARK_DELETING, shop_id, segment_id, options.lease_seconds)
    if row is None:
        return None
    claim = Claim(shop_id, segment_id, row["version"], row["backfill_owner"])
    return (await run(conn, claim, now, options)).exited


MARK_TEMPLATES_INSTALLED = """
UPDATE shops SET templates_installed_at = $2
WHERE id = $1 AND templates_installed_at IS NULL
RETURNING id
"""


async def install_templates(conn: asyncpg.Connection, shop_id: int, now: datetime) -> int:
    """Install the built-in segments once per shop (later removals stay removed); return count."""
    if await conn.fetchval(MARK_TEMPLATES_INSTALLED, shop_id, now) is None:
        return 0
    installed = 0
    for template in builtin_templates():
        spec = SegmentSpec(
            handle=template["handle"],
            name=template["name"],
            description=template["description"],
            conditions=template["conditions"],
            actions=template["actions"],
            template=template["handle"],
        )
        if await create_segment(conn, shop_id, spec, now) is not None:
            installed += 1
    return installed
