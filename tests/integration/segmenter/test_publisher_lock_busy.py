"""Review finding: a commit's changes are stranded when another publisher holds the lock at the
moment the worker's publisher is poked.

`publish_pending` returns 0 when `pg_try_advisory_xact_lock` fails, trusting the holder to
publish "them instead". But the holder may be in its last round, whose snapshot was taken before
this commit (it found nothing and is about to commit and return). Nobody then publishes the new
change until the next commit pokes a publisher or the scheduler's next round comes around:
under low traffic, the last change of a burst waits `scheduler_interval_seconds` instead of
going out right after its commit (test_publish_after_commit's promise).

The other publisher (another member's, or this process's scheduler) is stood in for by a
transaction of the test's holding the same lock across the poke.
"""

import asyncio
import random

import asyncpg
from prometheus_client import CollectorRegistry

from services.common.backoff import Backoff
from services.common.kafka import make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.health import ConsumerHealth
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.outbox import PUBLISHER_LOCK, PUBLISHER_LOCK_KEY, OutboxPublisher

WRITE_CHANGE = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at)
VALUES ($1, 41, 1, 'seg', 1, 'entered', 'event', now())
"""
UNPUBLISHED = "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
DEADLINE = 10.0


def publish_rounds(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "segflow_segmenter_stage_seconds_count"
        and sample.labels.get("stage") == "publish"
    )


async def test_a_change_committed_while_another_publisher_ends_its_round_is_still_published(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    database_url: str,
) -> None:
    registry = new_registry()
    health = ConsumerHealth()
    health.running()
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    publisher = OutboxPublisher(
        pool,
        producer,
        settings.topic_segment_changes,
        SegmenterMetrics.create(registry),
        Backoff(0.05, 0.2, random.Random(1)),
        health,
        send_timeout=10.0,
    )
    other = await asyncpg.connect(database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        # The other publisher's last round: lock taken, nothing left to publish in its snapshot.
        await other.execute("BEGIN")
        assert await other.fetchval(PUBLISHER_LOCK, *PUBLISHER_LOCK_KEY)
        assert await other.fetchval(UNPUBLISHED) == 0
        # A batch commits its change and pokes the worker's publisher, which finds the lock taken.
        await db.execute(WRITE_CHANGE, shop.shop_id)
        publisher.poke()
        async with asyncio.timeout(30):
            while publish_rounds(registry) < 1 and not task.done():
                await asyncio.sleep(0.02)
        # The other round ends, as it would, having found nothing.
        await other.execute("COMMIT")

        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while await db.fetchval(UNPUBLISHED) and loop.time() < deadline and not task.done():
            await asyncio.sleep(0.05)
        assert not task.done(), task
        assert await db.fetchval(UNPUBLISHED) == 0, (
            f"the change committed while another publisher held the lock is still unpublished "
            f"{DEADLINE:.0f} s after that publisher let the lock go"
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await other.close()
        await producer.stop()
