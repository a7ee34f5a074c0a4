"""kill -9 the segmenter at each dangerous point, restart it: nothing lost, nothing doubled."""

import asyncio
import json
import os
import signal
import subprocess
import sys
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

SEGFLOW = str(Path(sys.executable).with_name("segflow"))
CUSTOMERS = 12
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}


def segmenter_env(settings: Settings, crash_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env.update(
        DATABASE_URL=settings.database_url or "",
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        SEGFLOW_API_PORT=str(settings.api_port),
        SEGFLOW_TOPIC_EVENTS=settings.topic_events,
        SEGFLOW_TOPIC_SEGMENT_CHANGES=settings.topic_segment_changes,
        SEGFLOW_TOPIC_DEAD_LETTER=settings.topic_dead_letter,
        SEGFLOW_SEGMENTER_GROUP=settings.segmenter_group,
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="2000",
        SEGFLOW_SEGMENTER_BATCH_SIZE="4",
    )
    if crash_at:
        env["SEGFLOW_CRASH_AT"] = crash_at
    return env


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


async def wait_until_processed(db: asyncpg.Connection, process: "subprocess.Popen[bytes]") -> None:
    async with asyncio.timeout(60):
        while True:
            done = await db.fetchval("SELECT count(*) FROM processed_events")
            unpublished = await db.fetchval(
                "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
            )
            if done == CUSTOMERS * 2 and unpublished == 0:
                return
            assert process.poll() is None, "segmenter died unexpectedly"
            await asyncio.sleep(0.05)


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

    log = (tmp_path / "segmenter.log").open("wb")
    crashing = subprocess.Popen(
        [SEGFLOW, "segmenter"], env=segmenter_env(settings, f"{point}:2"), stderr=log
    )
    try:
        code = await asyncio.to_thread(crashing.wait, 60)
    finally:
        if crashing.poll() is None:
            crashing.kill()
    assert code == -signal.SIGKILL, (tmp_path / "segmenter.log").read_text()[-2000:]

    restarted = subprocess.Popen(
        [SEGFLOW, "segmenter"], env=segmenter_env(settings, None), stderr=log
    )
    try:
        await wait_until_processed(db, restarted)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(restarted.wait, 30) == 0
        log.close()

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
