"""A batch's changes are published by the worker right after its commit, not by the scheduler."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.service import run_segmenter
from services.segmenter.storage.segments import install_templates

# The scheduler runs one round at start, then waits this long: any change seen before then
# was published by the worker.
SCHEDULER_INTERVAL = 600.0
DEADLINE = 30.0


@pytest.fixture
async def segmenter(settings: Settings) -> AsyncIterator[CollectorRegistry]:
    """The segmenter with a scheduler that sleeps through the test; yields its metrics."""
    slow = settings.model_copy(update={"scheduler_interval_seconds": SCHEDULER_INTERVAL})
    registry = new_registry()
    metrics = SegmenterMetrics.create(registry)
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(run_segmenter(slow, metrics, stop, started=started))
    async with asyncio.timeout(30):
        await started.wait()
    yield registry
    stop.set()
    await task


async def post_order(url: str, shop: ShopCredentials, customer: int) -> str:
    now = datetime.now(UTC).isoformat()
    order = {
        "id": customer + 1,
        "created_at": now,
        "updated_at": now,
        "total_price": "1500.00",
        "customer": {"id": customer, "created_at": now, "updated_at": now},
        "line_items": [{"id": 1, "product_id": 632910392, "quantity": 1, "price": "1500.00"}],
    }
    body = json.dumps(order).encode()
    event_id = f"order-{customer}"
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
        "X-Shopify-Event-Id": event_id,
    }
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return event_id


async def wait_for_vip(consumer: AIOKafkaConsumer, event_id: str) -> dict[str, object]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        for records in batch.values():
            for record in records:
                change = json.loads(record.value)
                if change["cause_event_id"] == event_id and change["segment"]["handle"] == "vip":
                    return dict(change)
    raise AssertionError(f"no vip change for {event_id} within {DEADLINE} s")


async def test_changes_are_published_after_the_commit_without_the_scheduler_round(
    ingest_url: str,
    segmenter: CollectorRegistry,
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
) -> None:
    await install_templates(db, shop.shop_id, datetime.now(UTC))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.topic_segment_changes) or set()
        consumer.assign([TopicPartition(settings.topic_segment_changes, p) for p in partitions])
        # The first order may meet the scheduler's opening round; by the second, the
        # scheduler is in its long wait and only the worker can publish.
        for customer in (7001, 7002):
            event_id = await post_order(ingest_url, shop, customer)
            change = await wait_for_vip(consumer, event_id)
            assert change["change"] == "entered"
            assert change["customer_id"] == str(customer)
    finally:
        await consumer.stop()
    row = await db.fetchrow(
        "SELECT count(*) AS total, count(published_at) AS published FROM segment_changes"
    )
    assert row is not None and row["total"] == row["published"]
    # Each stage of the loop was timed, once per batch at least.
    for stage in ("fetch", "decode", "apply", "db_commit", "publish", "offset_commit"):
        count = segmenter.get_sample_value(
            "segflow_segmenter_stage_seconds_count", {"stage": stage}
        )
        assert count is not None and count >= 2, stage
    # And the rule evaluation of each batch that applied events, on its own.
    evaluated = segmenter.get_sample_value("segflow_segmenter_evaluation_seconds_count")
    assert evaluated is not None and evaluated >= 2
    spent = segmenter.get_sample_value("segflow_segmenter_evaluation_seconds_sum")
    assert spent is not None and spent > 0
