"""Publishes outbox rows to segflow.segment-changes and marks them published."""

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.segmenter.metrics import SegmenterMetrics

# SKIP LOCKED lets several replicas publish side by side without sending the same row twice.
UNPUBLISHED = """
SELECT c.*, s.domain FROM segment_changes c JOIN shops s ON s.id = c.shop_id
WHERE c.published_at IS NULL
ORDER BY c.seq
LIMIT $1
FOR UPDATE OF c SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE segment_changes SET published_at = $2 WHERE change_id = ANY($1::uuid[])"


def change_message(row: asyncpg.Record) -> dict[str, object]:
    """The JSON body of one change on segflow.segment-changes (ids as strings)."""
    return {
        "change_id": str(row["change_id"]),
        "shop": row["domain"],
        "customer_id": str(row["customer_id"]),
        "segment": {
            "id": str(row["segment_id"]),
            "handle": row["segment_handle"],
            "version": row["segment_version"],
        },
        "change": row["change"],
        "cause": row["cause"],
        "cause_event_id": row["cause_event_id"],
        "received_at": row["received_at"].isoformat() if row["received_at"] else None,
        "changed_at": row["changed_at"].isoformat(),
    }


async def publish_pending(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topic: str,
    metrics: SegmenterMetrics,
    batch: int = 500,
    before_marking: Callable[[], None] | None = None,
) -> int:
    """Publish every unpublished change (acks=all) and mark it; return how many were sent."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(UNPUBLISHED, batch)
            if not rows:
                return total
            futures = []
            for row in rows:
                key = f"{row['domain']}/{row['customer_id']}".encode()
                value = json.dumps(change_message(row), separators=(",", ":")).encode()
                futures.append(await producer.send(topic, value, key=key))
            await asyncio.gather(*futures)
            if before_marking is not None:
                before_marking()
            # Wall time, not the evaluation clock: this measures real delivery latency.
            now = datetime.now(UTC)
            await conn.execute(MARK_PUBLISHED, [row["change_id"] for row in rows], now)
        metrics.changes_published.inc(len(rows))
        for row in rows:
            metrics.segment_changes.labels(row["segment_handle"], row["change"]).inc()
            if row["received_at"] is not None:
                metrics.end_to_end_seconds.observe(
                    max(0.0, (now - row["received_at"]).total_seconds())
                )
        total += len(rows)
