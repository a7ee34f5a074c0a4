"""The outbox publisher beside the consumer loop retries through a broker outage, then publishes."""

import asyncio
import random
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from services.common.backoff import Backoff
from services.common.kafka import ensure_topics, make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.health import ConsumerHealth
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.outbox import OutboxPublisher

CUSTOMERS = [11, 12, 13]
LATER = [21, 22]
WRITE_CHANGES = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at)
SELECT $1, customer_id, 1, 'seg', 1, 'entered', 'event', now()
FROM unnest($2::bigint[]) AS c (customer_id)
"""
UNPUBLISHED = "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"


def publisher_retries(registry: CollectorRegistry) -> float:
    """Outbox rounds retried so far, whatever the error's class."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "segflow_segmenter_retries_total"
        and sample.labels.get("component") == "publisher"
    )


async def test_a_broker_outage_is_retried_and_the_changes_go_out_once_it_is_back(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    broker_factory: Any,
) -> None:
    broker = await broker_factory.start()
    topic = settings.topic_segment_changes
    await ensure_topics(broker.bootstrap_servers, [topic], 1)
    await db.execute(WRITE_CHANGES, shop.shop_id, CUSTOMERS)
    registry = new_registry()
    health = ConsumerHealth()
    health.running()
    producer = make_producer(broker.bootstrap_servers, request_timeout_ms=1_000)
    await producer.start()
    publisher = OutboxPublisher(
        pool,
        producer,
        topic,
        SegmenterMetrics.create(registry),
        Backoff(0.05, 0.2, random.Random(1)),
        health,
        send_timeout=1.0,
    )
    stop = asyncio.Event()
    broker.stop()
    task = asyncio.create_task(publisher.run(stop))
    try:
        publisher.poke()
        async with asyncio.timeout(30):
            while publisher_retries(registry) == 0 and not task.done():
                await asyncio.sleep(0.05)
        assert not task.done(), task
        assert health.state == "retrying"
        assert await db.fetchval(UNPUBLISHED) == len(CUSTOMERS)

        # The embedded broker comes back empty; nobody pokes the publisher again.
        await broker_factory.start(port=broker.port)
        await ensure_topics(broker.bootstrap_servers, [topic], 1)
        async with asyncio.timeout(30):
            # Marked first, then the round ends and the health is reported.
            while (await db.fetchval(UNPUBLISHED) or not health.ok) and not task.done():
                await asyncio.sleep(0.05)
        assert not task.done(), task

        # Poked again, it publishes what is written after the outage at once.
        await db.execute(WRITE_CHANGES, shop.shop_id, LATER)
        publisher.poke()
        async with asyncio.timeout(30):
            while await db.fetchval(UNPUBLISHED) and not task.done():
                await asyncio.sleep(0.05)
        assert not task.done(), task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
