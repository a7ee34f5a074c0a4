"""kill -9 the segmenter at each dangerous point, restart it: nothing lost, nothing doubled."""

import json
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.common.envelope import EnvelopeMeta, encode_envelope, partition_key
from services.common.kafka import make_producer
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import SegmenterProcess, poll, segmenter_env

CUSTOMERS = 12
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}


async def produce_orders(settings: Settings, shop: ShopCredentials) -> None:
    """Two orders of $600 per customer, each delivered twice (as Shopify's retries do)."""
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    now = datetime.now(UTC)
    try:
        for n in range(CUSTOMERS * 2):
            customer = 1000 + n % CUSTOMERS
            payload = {
                "id": 5000 + n,
                "created_at": (now - timedelta(hours=n)).isoformat(),
                "updated_at": (now - timedelta(hours=n)).isoformat(),
                "total_price": "600.00",
                "customer": {"id": customer},
                "line_items": [],
            }
            meta = EnvelopeMeta(
                event_id=f"order-{n}",
                shop=shop.domain,
                topic="orders/create",
                source="shopify",
                customer_id=str(customer),
                occurred_at=now,
                received_at=now,
            )
            value = encode_envelope(meta, json.dumps(payload).encode())
            for _ in range(2):
                await producer.send_and_wait(
                    settings.topic_events, value, key=partition_key(shop.domain, str(customer))
                )
    finally:
        await producer.stop()


async def all_published(db: asyncpg.Connection, segmenter: SegmenterProcess) -> bool:
    """True once every event is processed and every change published (for `poll`)."""
    segmenter.assert_alive()
    done = await db.fetchval("SELECT count(*) FROM processed_events")
    unpublished = await db.fetchval(
        "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
    )
    return bool(done == CUSTOMERS * 2 and unpublished == 0)


@pytest.mark.parametrize(
    "point", ["after_db_commit", "before_marking_published", "after_publish", "after_offset_commit"]
)
async def test_kill_9_and_restart_loses_and_doubles_nothing(
    point: str,
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("vip", "VIP", "", VIP, []), datetime.now(UTC)
        )
    await produce_orders(settings, shop)

    crashing = SegmenterProcess(
        segmenter_env(settings, SEGFLOW_CRASH_AT=f"{point}:2"), tmp_path / "segmenter.log"
    ).start()
    try:
        code = await crashing.wait_exit(60)
    finally:
        await crashing.stop()
    assert code == -signal.SIGKILL, crashing.log_tail()

    restarted = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        # Ready first: the crash may have left nothing to do, and a SIGTERM before the process
        # has installed its handlers ends it by the signal (-15), not by an orderly stop.
        await restarted.wait_ready()
        await poll(lambda: all_published(db, restarted), 60, "every event, published")
    finally:
        code = await restarted.stop()
    assert code == 0, restarted.log_tail()

    rows = await db.fetch("SELECT customer_id, orders_count, total_spent FROM customers")
    assert len(rows) == CUSTOMERS
    assert {(r["orders_count"], str(r["total_spent"])) for r in rows} == {(2, "1200.00")}
    outbox = await db.fetch("SELECT customer_id, change FROM segment_changes")
    assert sorted(r["customer_id"] for r in outbox) == list(range(1000, 1000 + CUSTOMERS))
    assert {r["change"] for r in outbox} == {"entered"}

    # Published at least once each; a republish after a crash keeps the same change id.
    records = await drain_topic(
        settings.kafka_bootstrap_servers or "", settings.topic_segment_changes
    )
    if point == "before_marking_published":
        assert len(records) > CUSTOMERS  # the crash really made it publish some again
    ids_by_customer: dict[str, set[str]] = defaultdict(set)
    for record in records:
        change = json.loads(record.value)
        ids_by_customer[change["customer_id"]].add(change["change_id"])
    assert len(ids_by_customer) == CUSTOMERS
    assert all(len(ids) == 1 for ids in ids_by_customer.values())
