"""Two segmenters in one consumer group, one joining and one leaving mid-stream: exact totals."""

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common.envelope import EnvelopeMeta, encode_envelope, partition_key
from services.common.kafka import make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.service import run_segmenter
from services.segmenter.storage.segments import SegmentSpec, create_segment

CUSTOMERS = 30
ORDERS_EACH = 4
# Net spend passes 700 during the third round, whatever order orders and refunds land in,
# and never falls back: one entry per customer, no exit.
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 700}]}


def envelope(shop: str, topic: str, event_id: str, customer: int | None, body: object) -> bytes:
    now = datetime.now(UTC)
    meta = EnvelopeMeta(
        event_id=event_id,
        shop=shop,
        topic=topic,
        source="shopify",
        customer_id=str(customer) if customer is not None else None,
        occurred_at=now,
        received_at=now,
    )
    return encode_envelope(meta, json.dumps(body).encode())


async def produce_round(settings: Settings, shop: str, round_: int) -> None:
    """One order of $300 per customer, and a $50 refund of it keyed by the shop only."""
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    placed = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    try:
        for n in range(CUSTOMERS):
            customer = 2000 + n
            order_id = 10_000 * (round_ + 1) + n
            order = {
                "id": order_id,
                "created_at": placed,
                "updated_at": placed,
                "total_price": "300.00",
                "customer": {"id": customer},
            }
            refund = {
                "id": order_id + 5_000,
                "order_id": order_id,
                "created_at": placed,
                "transactions": [{"kind": "refund", "status": "success", "amount": "50.00"}],
            }
            await producer.send(
                settings.topic_events,
                envelope(shop, "orders/create", f"o{order_id}", customer, order),
                key=partition_key(shop, str(customer)),
            )
            await producer.send(
                settings.topic_events,
                envelope(shop, "refunds/create", f"r{order_id}", None, refund),
                key=partition_key(shop, None),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for(db: asyncpg.Connection, processed: int) -> None:
    async with asyncio.timeout(60):
        while await db.fetchval(
            "SELECT count(*) FROM processed_events"
        ) < processed or await db.fetchval(
            "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
        ):
            await asyncio.sleep(0.05)


async def test_members_joining_and_leaving_lose_and_double_nothing(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("vip", "VIP", "", VIP, []), datetime.now(UTC)
        )
    small = settings.model_copy(update={"segmenter_batch_size": 7})
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(run_segmenter(small, SegmenterMetrics.create(new_registry()), stop_a))
    await produce_round(settings, shop.domain, 0)
    await produce_round(settings, shop.domain, 1)
    b = asyncio.create_task(run_segmenter(small, SegmenterMetrics.create(new_registry()), stop_b))
    await produce_round(settings, shop.domain, 2)
    await wait_for(db, processed=3 * 2 * CUSTOMERS)
    stop_a.set()
    await a
    await produce_round(settings, shop.domain, 3)
    await wait_for(db, processed=ORDERS_EACH * 2 * CUSTOMERS)
    stop_b.set()
    await b

    rows = await db.fetch("SELECT orders_count, total_spent, refunds_count FROM customers")
    assert len(rows) == CUSTOMERS
    assert {tuple(r) for r in rows} == {(ORDERS_EACH, ORDERS_EACH * 250, ORDERS_EACH)}
    entries = Counter(
        r["customer_id"]
        for r in await db.fetch("SELECT customer_id FROM segment_changes WHERE change = 'entered'")
    )
    assert entries == Counter({2000 + n: 1 for n in range(CUSTOMERS)})
    orphans = await db.fetchval("SELECT count(*) FROM orders WHERE customer_id IS NULL")
    assert orphans == 0
