"""With the broker gone, the scheduler still reports the outbox's backlog: the gauge is what
SegflowOutboxBacklog reads, and a publisher that cannot reach Kafka is what it is there for."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.common.kafka import ensure_topics, make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.scheduler import Scheduler

WRITE_OLD_CHANGES = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at, created_at)
SELECT $1, customer_id, 1, 'seg', 1, 'entered', 'event', now(), now() - interval '120 seconds'
FROM unnest($2::bigint[]) AS c (customer_id)
"""
NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_the_outbox_gauges_move_while_the_broker_is_down(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    broker_factory: Any,
) -> None:
    broker = await broker_factory.start()
    topic = settings.topic_segment_changes
    await ensure_topics(broker.bootstrap_servers, [topic], 1)
    await db.execute(WRITE_OLD_CHANGES, shop.shop_id, [1, 2, 3])
    registry = new_registry()
    own = settings.model_copy(update={"outbox_send_timeout_seconds": 1.0})
    producer = make_producer(broker.bootstrap_servers, request_timeout_ms=1_000)
    await producer.start()
    broker.stop()
    scheduler = Scheduler(own, pool, producer, SegmenterMetrics.create(registry), lambda: NOW)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        # The round cannot publish; it must neither hang nor skip the gauges.
        async with asyncio.timeout(20):
            while not task.done():
                await asyncio.sleep(0.05)
        assert task.exception() is not None, "a round that cannot publish fails, to be retried"
        live = registry.get_sample_value("segflow_outbox_backlog", {"lane": "live"})
        oldest = registry.get_sample_value(
            "segflow_outbox_oldest_unpublished_seconds", {"lane": "live"}
        )
        assert live == 3
        assert oldest is not None and oldest >= 120
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
