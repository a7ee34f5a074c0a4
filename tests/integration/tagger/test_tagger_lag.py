"""The tagger's consumer lag gauge: records behind the high watermark after a batch, and the
series dropped when the partition moves to another member."""

import asyncio

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from services.common.kafka import make_consumer
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.health import ComponentHealth
from services.tagger.metrics import TaggerMetrics
from services.tagger.worker import TaggerWorker
from tests.integration.tagger.test_tagger_worker import publish_changes

SENT = 5
TAKEN = 2


async def test_lag_is_what_the_batch_left_behind_and_goes_with_a_revoked_partition(
    settings: Settings, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await publish_changes(settings, shop.domain, 5, SENT)

    registry = CollectorRegistry()
    metrics = TaggerMetrics.create(registry)
    consumer = make_consumer(settings.require_kafka(), settings.tagger_group)
    consumer.subscribe([settings.topic_segment_changes])
    await consumer.start()
    worker = TaggerWorker(settings, pool, consumer, metrics, ComponentHealth(), lambda: None)
    try:
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        async with asyncio.timeout(30):
            while not batch:
                batch = await consumer.getmany(timeout_ms=200, max_records=TAKEN)
        await worker.process(batch)
    finally:
        await consumer.stop()

    [(tp, records)] = batch.items()
    labels = {"topic": tp.topic, "partition": str(tp.partition)}
    assert len(records) == TAKEN
    assert registry.get_sample_value("segflow_tagger_consumer_lag", labels) == SENT - TAKEN
    await worker.listener.on_partitions_revoked([tp])
    assert registry.get_sample_value("segflow_tagger_consumer_lag", labels) is None
