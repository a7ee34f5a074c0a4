"""The segmenter service: the consumer worker and the scheduler, with their connections."""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.common.db import create_pool
from services.common.kafka import make_consumer, make_producer, wait_for_broker
from services.common.settings import Settings
from services.segmenter.metrics import SegmenterMetrics
from services.segmenter.scheduler import Scheduler
from services.segmenter.worker import SegmenterWorker

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_segmenter(
    settings: Settings,
    metrics: SegmenterMetrics,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime] = utc_now,
    started: asyncio.Event | None = None,
) -> None:
    """Consume and schedule until `stop` is set; a failing task stops the other and re-raises."""
    bootstrap = settings.require_kafka()
    await wait_for_broker(bootstrap)
    pool = await create_pool(
        settings.require_database_url(), settings.db_pool_min, settings.db_pool_max
    )
    producer = make_producer(bootstrap)
    consumer = make_consumer(
        bootstrap,
        settings.segmenter_group,
        max_records=settings.segmenter_batch_size,
        session_timeout_ms=settings.consumer_session_timeout_ms,
    )
    try:
        await producer.start()
        worker = SegmenterWorker(settings, pool, consumer, producer, metrics, clock)
        consumer.subscribe([settings.topic_events], listener=worker.listener)
        await consumer.start()
        scheduler = Scheduler(settings, pool, producer, metrics, clock)
        if started is not None:
            started.set()
        tasks = [
            asyncio.create_task(worker.run(stop), name="segmenter-worker"),
            asyncio.create_task(scheduler.run(stop), name="segmenter-scheduler"),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        await consumer.stop()
        await producer.stop()
        await asyncio.wait_for(pool.close(), 10)
        logger.info("segmenter stopped")
