"""With the broker gone, the segmenter still reports the outbox's backlog while its scheduler
round waits on the publish: the gauge is what SegflowOutboxBacklog reads, and a publisher that
cannot reach Kafka is what it is there for."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

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


async def _producer_whose_broker_is_gone(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    broker_factory: Any,
    request_timeout_ms: int,
) -> AIOKafkaProducer:
    """A started producer whose private broker has been stopped, one unpublished change
    written; the caller stops the producer."""
    broker = await broker_factory.start()
    await ensure_topics(broker.bootstrap_servers, [settings.topic_segment_changes], 1)
    await db.execute(WRITE_OLD_CHANGES, shop.shop_id, [1])
    producer = make_producer(broker.bootstrap_servers, request_timeout_ms=request_timeout_ms)
    await producer.start()
    broker.stop()
    return producer


async def test_the_outbox_gauges_move_while_a_round_hangs(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    broker_factory: Any,
) -> None:
    # A round can take minutes (a backfill, a publish waiting on a broker that is gone):
    # the gauges are reported beside it, not between rounds.
    registry = new_registry()
    producer = await _producer_whose_broker_is_gone(settings, shop, db, broker_factory, 6_000)
    scheduler = Scheduler(settings, pool, producer, SegmenterMetrics.create(registry), lambda: NOW)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.run(stop)), asyncio.create_task(scheduler.observe(stop))]

    def live() -> float | None:
        return registry.get_sample_value("segflow_outbox_backlog", {"lane": "live"})

    try:
        async with asyncio.timeout(20):
            while live() != 1:
                await asyncio.sleep(0.05)
        # Written while the round waits on its publish.
        await db.execute(WRITE_OLD_CHANGES, shop.shop_id, [2, 3])
        async with asyncio.timeout(20):
            while live() != 3:
                await asyncio.sleep(0.05)
        assert not any(task.done() for task in tasks), tasks
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


async def test_a_scheduler_publish_to_a_gone_broker_gives_up_within_its_send_timeout(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    broker_factory: Any,
) -> None:
    # The scheduler publishes under the publisher lock, as the worker's outbox does: without
    # its own bound the wait holds that lock, and so every live change, for as long as the
    # producer's request timeout (8 s here, past the test's 5 s; it also bounds the stop's
    # flush below).
    producer = await _producer_whose_broker_is_gone(settings, shop, db, broker_factory, 8_000)
    bounded = settings.model_copy(update={"outbox_send_timeout_seconds": 1.0})
    scheduler = Scheduler(
        bounded, pool, producer, SegmenterMetrics.create(new_registry()), lambda: NOW
    )
    try:
        with pytest.raises(KafkaTimeoutError):
            async with asyncio.timeout(5):
                await scheduler.run(asyncio.Event())
        # The lock went with the transaction: the change is still there, unpublished.
        assert (
            await db.fetchval("SELECT count(*) FROM segment_changes WHERE published_at IS NULL")
            == 1
        )
    finally:
        await producer.stop()
