"""The tagger's consumer over a real broker and PostgreSQL: segment changes queue their
customers for a look at their tags; Shopify's tags webhooks confirm the ledger or record a
manual removal, and queue nothing."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from services.common.envelope import EnvelopeMeta, encode_envelope
from services.common.kafka import make_consumer, make_producer
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.health import ComponentHealth
from services.tagger.metrics import TaggerMetrics
from services.tagger.worker import TaggerWorker

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def change(shop: str, customer_id: int, cause: str, seq: int) -> bytes:
    return orjson.dumps(
        {
            "change_id": f"00000000-0000-0000-0000-{seq:012d}",
            "seq": seq,
            "shop": shop,
            "customer_id": str(customer_id),
            "segment": {"id": "1", "handle": "vip", "version": 1},
            "change": "entered",
            "cause": cause,
            "changed_at": NOW.isoformat(),
        }
    )


async def publish_changes(settings: Settings, shop: str, customer_id: int, count: int) -> None:
    """Put `count` changes of one customer (one key, one partition) on the changes topic,
    with seq 1 to `count`."""
    producer = make_producer(settings.require_kafka())
    await producer.start()
    try:
        for seq in range(1, count + 1):
            value = change(shop, customer_id, "event", seq)
            await producer.send_and_wait(settings.topic_segment_changes, value, key=b"k")
    finally:
        await producer.stop()


def echo(shop: str, topic: str, customer_id: int, tags: list[str], at: datetime) -> bytes:
    payload = {
        "customerId": f"gid://shopify/Customer/{customer_id}",
        "tags": tags,
        "occurredAt": at.isoformat(),
    }
    meta = EnvelopeMeta(
        event_id=f"{topic}-{customer_id}-{at.timestamp()}",
        shop=shop,
        topic=topic,
        source="shopify",
        customer_id=str(customer_id),
        occurred_at=at,
        received_at=at,
    )
    return encode_envelope(meta, orjson.dumps(payload))


async def test_changes_queue_work_and_echoes_move_only_the_ledger(
    settings: Settings, pool: asyncpg.Pool, db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    domain = shop.domain
    await db.execute(
        "INSERT INTO tag_ledger (shop_id, customer_id, tag_key, tag, state, changed_at)"
        " VALUES ($1, 7, 'vip', 'VIP', 'adding', $2), ($1, 8, 'vip', 'VIP', 'added', $2)",
        shop.shop_id,
        NOW,
    )
    producer = make_producer(settings.require_kafka())
    await producer.start()
    try:
        later = NOW + timedelta(seconds=5)
        sent = [
            (settings.topic_segment_changes, change(domain, 5, "event", 1)),
            (settings.topic_segment_changes, change(domain, 6, "backfill", 2)),
            (settings.topic_segment_changes, change("unknown.myshopify.com", 9, "event", 3)),
            (settings.topic_events, echo(domain, "customer.tags_added", 7, ["VIP"], later)),
            (settings.topic_events, echo(domain, "customer.tags_removed", 8, ["vip"], later)),
            (settings.topic_events, b'{"topic":"orders/create","not":"a tags webhook"}'),
        ]
        for topic, value in sent:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()

    consumer = make_consumer(settings.require_kafka(), settings.tagger_group)
    consumer.subscribe([settings.topic_segment_changes, settings.topic_events])
    await consumer.start()
    pokes: list[int] = []
    worker = TaggerWorker(
        settings,
        pool,
        consumer,
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        lambda: pokes.append(1),
    )
    try:
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        async with asyncio.timeout(30):
            while sum(len(records) for records in batch.values()) < len(sent):
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    batch.setdefault(tp, []).extend(records)
        await worker.process(batch)
        committed = {tp: await consumer.committed(tp) for tp in batch}
    finally:
        await consumer.stop()

    work = await db.fetch("SELECT customer_id, bulk FROM tag_work ORDER BY customer_id")
    assert [(r["customer_id"], r["bulk"]) for r in work] == [(5, False), (6, True)]
    ledger = await db.fetch("SELECT customer_id, state FROM tag_ledger ORDER BY customer_id")
    # Ours came back: confirmed. Ours removed by someone else: an override, not re-added.
    assert [(r["customer_id"], r["state"]) for r in ledger] == [(7, "added"), (8, "overridden")]
    assert pokes == [1]
    assert all(committed[tp] == records[-1].offset + 1 for tp, records in batch.items())
