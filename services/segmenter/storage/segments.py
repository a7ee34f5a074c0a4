"""Segments: create, change and delete them, backfilling membership over all stored customers.

Backfill is one SQL statement per segment (the rule compiled to a WHERE clause), not a loop
over customers. Each holds the shop's exclusive advisory lock, so it never interleaves with a
batch evaluating the same shop's customers against an older version.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.common.jsontext import encode_json
from services.segmenter.domain.rules.compile_sql import compile_where
from services.segmenter.domain.rules.schedule import reads_time
from services.segmenter.domain.rules.templates import builtin_templates
from services.segmenter.storage import queries

INSERT_SEGMENT = """
INSERT INTO segments (shop_id, handle, name, description, conditions, actions, template)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)
ON CONFLICT (shop_id, handle) DO NOTHING
RETURNING id, version
"""
UPDATE_SEGMENT = """
UPDATE segments SET name = $3, description = $4, conditions = $5::jsonb, actions = $6::jsonb,
    version = version + 1, updated_at = now()
WHERE shop_id = $1 AND id = $2
RETURNING id, version, handle
"""
SEGMENT_FOR_UPDATE = "SELECT * FROM segments WHERE shop_id = $1 AND id = $2 FOR UPDATE"
EXIT_ALL_MEMBERS = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at)
SELECT m.shop_id, m.customer_id, m.segment_id, $3, $4, 'exited', 'segment_deleted', $5
FROM memberships m WHERE m.shop_id = $1 AND m.segment_id = $2
"""
DELETE_SEGMENT = "DELETE FROM segments WHERE shop_id = $1 AND id = $2"
# Re-evaluated by the scheduler soon, so each customer's next_eval_at accounts for the rule.
RESCHEDULE_SHOP = """
UPDATE customers SET next_eval_at = $2
WHERE shop_id = $1 AND NOT deleted AND (next_eval_at IS NULL OR next_eval_at > $2)
"""

_BACKFILL = """
WITH matched AS (
    SELECT customer_id FROM customers
    WHERE shop_id = $1 AND NOT deleted AND ({where})
), entered AS (
    INSERT INTO memberships (shop_id, segment_id, customer_id, since)
    SELECT $1, $2, customer_id, $5 FROM matched
    ON CONFLICT DO NOTHING
    RETURNING customer_id
), exited AS (
    DELETE FROM memberships m
    WHERE m.segment_id = $2
      AND NOT EXISTS (SELECT 1 FROM matched WHERE matched.customer_id = m.customer_id)
    RETURNING customer_id
), changes AS (
    INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle,
        segment_version, change, cause, changed_at)
    SELECT $1::bigint, customer_id, $2::bigint, $3::text, $4::int, 'entered', 'backfill',
        $5::timestamptz
    FROM entered
    UNION ALL
    SELECT $1::bigint, customer_id, $2::bigint, $3::text, $4::int, 'exited', 'backfill',
        $5::timestamptz
    FROM exited
    RETURNING change
)
SELECT count(*) FILTER (WHERE change = 'entered') AS entered,
       count(*) FILTER (WHERE change = 'exited') AS exited
FROM changes
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


@dataclass(frozen=True)
class BackfillResult:
    entered: int
    exited: int


async def backfill(
    conn: asyncpg.Connection,
    shop_id: int,
    segment_id: int,
    handle: str,
    version: int,
    conditions: Mapping[str, Any],
    now: datetime,
) -> BackfillResult:
    """Bring the segment's memberships in line with its rule for every stored customer."""
    where, params = compile_where(conditions, now_param=5, first_param=6)
    row = await conn.fetchrow(
        _BACKFILL.format(where=where), shop_id, segment_id, handle, version, now, *params
    )
    if reads_time(conditions):
        await conn.execute(RESCHEDULE_SHOP, shop_id, now)
    return BackfillResult(row["entered"], row["exited"])


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


async def create_segment(
    conn: asyncpg.Connection, shop_id: int, spec: SegmentSpec, now: datetime
) -> tuple[int, BackfillResult] | None:
    """Insert and backfill a segment in the caller's transaction; None if the handle is taken."""
    await queries.lock_shop_exclusive(conn, shop_id)
    row = await conn.fetchrow(
        INSERT_SEGMENT,
        shop_id,
        spec.handle,
        spec.name,
        spec.description,
        to_json(spec.conditions),
        to_json(spec.actions),
        spec.template,
    )
    if row is None:
        return None
    result = await backfill(
        conn, shop_id, row["id"], spec.handle, row["version"], spec.conditions, now
    )
    return row["id"], result


async def update_segment(
    conn: asyncpg.Connection, shop_id: int, segment_id: int, spec: SegmentSpec, now: datetime
) -> BackfillResult | None:
    """Change a segment (a new version) and backfill it; None if the shop has no such segment."""
    await queries.lock_shop_exclusive(conn, shop_id)
    row = await conn.fetchrow(
        UPDATE_SEGMENT,
        shop_id,
        segment_id,
        spec.name,
        spec.description,
        to_json(spec.conditions),
        to_json(spec.actions),
    )
    if row is None:
        return None
    return await backfill(
        conn, shop_id, segment_id, row["handle"], row["version"], spec.conditions, now
    )


async def delete_segment(
    conn: asyncpg.Connection, shop_id: int, segment_id: int, now: datetime
) -> int | None:
    """Delete a segment, emitting an exit for every member; None if there is no such segment."""
    await queries.lock_shop_exclusive(conn, shop_id)
    row = await conn.fetchrow(SEGMENT_FOR_UPDATE, shop_id, segment_id)
    if row is None:
        return None
    status = await conn.execute(
        EXIT_ALL_MEMBERS, shop_id, segment_id, row["handle"], row["version"], now
    )
    await conn.execute(DELETE_SEGMENT, shop_id, segment_id)
    return int(status.split()[-1])


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
