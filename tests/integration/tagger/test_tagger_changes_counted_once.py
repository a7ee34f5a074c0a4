"""A batch the tagger retries counts its segment changes once, when it is committed: counted on
every attempt, a tagger stuck on one batch kept segflow_tagger_changes_total rising, and
SegflowTaggerStalled (changes published, none consumed) could never fire. Each retry is
counted instead (SegflowTaggerRetrying: one replica stuck while the others go on)."""

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

SENT = 3


async def test_a_failed_attempt_counts_nothing_and_the_commit_counts_each_change_once(
    settings: Settings, pool: asyncpg.Pool, database_url: str, shop: ShopCredentials
) -> None:
    await publish_changes(settings, shop.domain, 5, SENT)

    registry = CollectorRegistry()
    metrics = TaggerMetrics.create(registry)
    consumer = make_consumer(settings.require_kafka(), settings.tagger_group)
    consumer.subscribe([settings.topic_segment_changes])
    await consumer.start()
    # The database gone for this worker: its pool is closed, every attempt fails.
    gone = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await gone.close()
    failing = TaggerWorker(settings, gone, consumer, metrics, ComponentHealth(), lambda: None)
    working = TaggerWorker(settings, pool, consumer, metrics, ComponentHealth(), lambda: None)

    def consumed() -> float:
        return registry.get_sample_value("segflow_tagger_changes_total", {"lane": "live"}) or 0

    try:
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        async with asyncio.timeout(30):
            while sum(len(r) for r in batch.values()) < SENT:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    batch.setdefault(tp, []).extend(records)
        for _ in range(3):
            try:
                await failing.process(batch)
            except asyncpg.InterfaceError:
                pass
            else:
                raise AssertionError("a closed pool let the batch through")
        assert consumed() == 0
        await working.process(batch)
        assert consumed() == SENT
    finally:
        await consumer.stop()


async def test_each_retry_of_a_batch_is_counted(
    settings: Settings, database_url: str, shop: ShopCredentials
) -> None:
    await publish_changes(settings, shop.domain, 5, 1)
    registry = CollectorRegistry()
    consumer = make_consumer(settings.require_kafka(), settings.tagger_group)
    consumer.subscribe([settings.topic_segment_changes])
    await consumer.start()
    gone = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await gone.close()
    own = settings.model_copy(update={"retry_initial_seconds": 0.05, "retry_max_seconds": 0.1})
    worker = TaggerWorker(
        own, gone, consumer, TaggerMetrics.create(registry), ComponentHealth(), lambda: None
    )
    labels = {"component": "consumer", "dependency": "database", "reason": "InterfaceError"}

    def retries() -> float:
        return registry.get_sample_value("segflow_tagger_retries_total", labels) or 0

    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(30):
            while retries() < 2 and not task.done():
                await asyncio.sleep(0.05)
        assert not task.done(), task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
