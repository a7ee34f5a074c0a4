"""The segment sizes gauge: members per segment handle, counted in the database now and then
(a count over every membership is too dear for every scheduler round)."""

import asyncpg

from services.common.metrics import OTHER, bounded_label
from services.segmenter.domain.rules.templates import builtin_handles
from services.segmenter.runtime.metrics import SegmenterMetrics

SEGMENT_SIZES = """
SELECT s.handle, count(*) AS members
FROM memberships m JOIN segments s ON s.id = m.segment_id
GROUP BY s.handle
"""


async def observe_segment_sizes(pool: asyncpg.Pool, metrics: SegmenterMetrics) -> None:
    """Set `segflow_segment_members` per handle, summed over shops (merchants' own handles
    read `other`; a segment emptied reads 0)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(SEGMENT_SIZES)
    known = builtin_handles()
    sizes = dict.fromkeys([*sorted(known), OTHER], 0)
    for row in rows:
        sizes[bounded_label(row["handle"], known)] += row["members"]
    for handle, members in sizes.items():
        metrics.segment_members.labels(handle).set(members)
