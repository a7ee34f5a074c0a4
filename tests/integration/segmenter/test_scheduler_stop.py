"""Review finding: the scheduler's outbox round does not stop when asked, so a SIGTERM with a
backlog in the outbox (a backfill's changes, changes held back by a broker outage) waits for the
whole backlog to be published.

The worker's publisher bounds its last round (PUBLISHER_STOP_SECONDS: "what it leaves stays in
the outbox for the next start"), but `Scheduler.run` calls `publish_pending` without `max_rows`
or any look at `stop`, and `run_segmenter` awaits the scheduler task before closing: the process
outlives its stop timeout and is SIGKILLed (by `segflow dev` after 30 s, by the orchestrator
after its grace period), leaving the group without a LeaveGroup.
"""

import asyncio
from datetime import UTC, datetime

import asyncpg

from services.common.kafka import make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.scheduler import Scheduler

BACKLOG = 20_000
WRITE_CHANGES = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at)
SELECT $1, customer_id, 1, 'seg', 1, 'entered', 'backfill', now()
FROM generate_series(1, $2) AS c (customer_id)
"""
UNPUBLISHED = "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"


async def test_the_scheduler_stops_publishing_a_backlog_when_told_to_stop(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await db.execute(WRITE_CHANGES, shop.shop_id, BACKLOG)
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    scheduler = Scheduler(
        settings.model_copy(update={"scheduler_interval_seconds": 600.0}),
        pool,
        producer,
        SegmenterMetrics.create(new_registry()),
        lambda: datetime.now(UTC),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        # SIGTERM arrives once the round has published its first slice of the backlog.
        async with asyncio.timeout(60):
            while await db.fetchval(UNPUBLISHED) == BACKLOG and not task.done():
                await asyncio.sleep(0.01)
        stop.set()
        at_stop = await db.fetchval(UNPUBLISHED)
        await asyncio.wait_for(asyncio.shield(task), 120)
        left = await db.fetchval(UNPUBLISHED)
        assert left > 0, (
            f"told to stop with {at_stop} of {BACKLOG} changes unpublished, the scheduler "
            "went on to publish every one before returning"
        )
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
