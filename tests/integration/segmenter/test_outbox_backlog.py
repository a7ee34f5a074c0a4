"""The outbox backlog gauges read the table: unpublished rows per lane and the age of each
lane's oldest, back to 0 once published."""

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from services.common.kafka import make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.outbox import observe_backlog, publish_pending

WRITE_CHANGES = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at, created_at)
SELECT $1, customer_id, 1, 'seg', 1, 'entered', $3, now(), now() - make_interval(secs => $4)
FROM unnest($2::bigint[]) AS c (customer_id)
"""


def gauges(registry: CollectorRegistry, lane: str) -> tuple[float | None, float | None]:
    labels = {"lane": lane}
    backlog = registry.get_sample_value("segflow_outbox_backlog", labels)
    oldest = registry.get_sample_value("segflow_outbox_oldest_unpublished_seconds", labels)
    return backlog, oldest


async def test_the_backlog_gauges_count_each_lane_and_age_its_oldest_row(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials, settings: Settings
) -> None:
    registry = new_registry()
    metrics = SegmenterMetrics.create(registry)
    await observe_backlog(pool, metrics)
    assert gauges(registry, "live") == (0, 0)
    assert gauges(registry, "bulk") == (0, 0)

    await db.execute(WRITE_CHANGES, shop.shop_id, [1, 2, 3], "event", 120.0)
    await db.execute(WRITE_CHANGES, shop.shop_id, [4], "event", 0.0)
    await db.execute(WRITE_CHANGES, shop.shop_id, [5, 6], "backfill", 30.0)
    await observe_backlog(pool, metrics)
    live, live_oldest = gauges(registry, "live")
    bulk, bulk_oldest = gauges(registry, "bulk")
    assert live == 4 and live_oldest is not None and 120 <= live_oldest < 180
    assert bulk == 2 and bulk_oldest is not None and 30 <= bulk_oldest < 90

    producer: AIOKafkaProducer = make_producer(settings.require_kafka())
    await producer.start()
    try:
        published = await publish_pending(
            pool, producer, settings.topic_segment_changes, metrics, batch=100
        )
    finally:
        await producer.stop()
    assert published == 6
    await observe_backlog(pool, metrics)
    assert gauges(registry, "live") == (0, 0)
    assert gauges(registry, "bulk") == (0, 0)
