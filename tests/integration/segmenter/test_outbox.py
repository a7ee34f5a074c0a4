"""The outbox against a real PostgreSQL and broker: live changes ahead of bulk ones, each
customer's changes in seq order, racing publishers, and the retention purge."""

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.common.kafka import make_producer
from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.outbox import publish_pending, purge_published
from tests.helpers import drain_topic

WRITE_CHANGES = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, changed_at)
SELECT $1, customer_id, 1, 'seg', 1, $3, $4, now() FROM unnest($2::bigint[]) AS c (customer_id)
"""


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    started = make_producer(settings.kafka_bootstrap_servers or "")
    await started.start()
    yield started
    await started.stop()


async def write(
    db: asyncpg.Connection, shop_id: int, customers: list[int], change: str, cause: str
) -> None:
    await db.execute(WRITE_CHANGES, shop_id, customers, change, cause)


async def publish(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    settings: Settings,
    batch: int = 500,
    max_rows: int | None = None,
) -> int:
    metrics = SegmenterMetrics.create(new_registry())
    return await publish_pending(
        pool, producer, settings.topic_segment_changes, metrics, batch=batch, max_rows=max_rows
    )


async def published(db: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT customer_id, cause FROM segment_changes WHERE published_at IS NOT NULL ORDER BY seq"
    )
    return [(r["customer_id"], r["cause"]) for r in rows]


async def test_a_live_change_is_not_stuck_behind_a_backfill(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    shop: ShopCredentials,
    settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    await write(db, shop.shop_id, list(range(1, 1001)), "entered", "backfill")
    await write(db, shop.shop_id, [5000], "entered", "event")
    # The live change goes at once, with a quarter batch of the backfill's oldest changes.
    assert await publish(pool, producer, settings, batch=12, max_rows=1) == 4
    assert await published(db) == [
        (1, "backfill"),
        (2, "backfill"),
        (3, "backfill"),
        (5000, "event"),
    ]
    # With no live change waiting, the backfill's changes go, in seq order.
    assert await publish(pool, producer, settings, batch=12, max_rows=12) == 12
    assert [c for c, _ in await published(db)] == [*range(1, 16), 5000]


async def test_a_customers_earlier_bulk_changes_leave_before_their_live_one(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    shop: ShopCredentials,
    settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    await write(db, shop.shop_id, [1, 2, 3], "entered", "backfill")
    await write(db, shop.shop_id, [2], "exited", "event")
    await write(db, shop.shop_id, [2], "entered", "import")
    # Customer 2's live exit takes its earlier backfill entry along, past the bulk share
    # (one row of a batch of 4: customer 1's).
    assert await publish(pool, producer, settings, batch=4, max_rows=1) == 3
    assert await published(db) == [(1, "backfill"), (2, "backfill"), (2, "event")]

    assert await publish(pool, producer, settings, batch=10) == 2
    records = await drain_topic(
        settings.kafka_bootstrap_servers or "", settings.topic_segment_changes
    )
    changes = [json.loads(r.value) for r in records if r.key == f"{shop.domain}/2".encode()]
    assert [(c["change"], c["cause"]) for c in changes] == [
        ("entered", "backfill"),
        ("exited", "event"),
        ("entered", "import"),
    ]


async def test_racing_publishers_keep_each_customers_order_and_publish_each_change_once(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    shop: ShopCredentials,
    settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    customers = list(range(1, 41))

    async def writer() -> None:
        for round_ in range(10):
            cause = "backfill" if round_ % 3 == 0 else "event"
            change = "entered" if round_ % 2 == 0 else "exited"
            await write(db, shop.shop_id, customers[round_ % 4 :: 4], change, cause)
            await asyncio.sleep(0)

    async def publisher() -> int:
        total = 0
        for _ in range(30):
            total += await publish(pool, producer, settings, batch=7, max_rows=14)
        return total

    async with asyncio.timeout(60):
        _, first, second = await asyncio.gather(writer(), publisher(), publisher())
        rest = await publish(pool, producer, settings)
    rows = await db.fetch("SELECT change_id, seq, customer_id FROM segment_changes")
    assert first + second + rest == len(rows) == 100
    assert await db.fetchval("SELECT count(*) FROM segment_changes WHERE published_at IS NULL") == 0

    records = await drain_topic(
        settings.kafka_bootstrap_servers or "", settings.topic_segment_changes
    )
    messages = [json.loads(r.value) for r in records]
    assert sorted(m["change_id"] for m in messages) == sorted(str(r["change_id"]) for r in rows)
    by_customer: dict[str, list[int]] = defaultdict(list)
    for message in messages:  # one partition per customer, so this is the order of arrival
        by_customer[message["customer_id"]].append(message["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_customer.values())


async def test_published_changes_are_purged_after_the_retention_and_unpublished_never(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await write(db, shop.shop_id, [1, 2, 3, 4], "entered", "event")
    now = datetime.now(UTC)
    await db.execute(
        "UPDATE segment_changes SET published_at = $1 WHERE customer_id IN (1, 2)",
        now - timedelta(days=8),
    )
    await db.execute("UPDATE segment_changes SET published_at = $1 WHERE customer_id = 3", now)
    cutoff = now - timedelta(days=7)
    # Bounded: one row per call here, until none is left.
    assert [await purge_published(pool, cutoff, 1) for _ in range(3)] == [1, 1, 0]
    left = await db.fetch("SELECT customer_id FROM segment_changes ORDER BY customer_id")
    assert [r["customer_id"] for r in left] == [3, 4]


async def test_bulk_changes_are_not_starved_by_a_stream_of_live_ones(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    shop: ShopCredentials,
    settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    await write(db, shop.shop_id, list(range(1, 101)), "entered", "backfill")
    for round_ in range(5):
        # Live changes keep arriving, more than a publish takes at once.
        await write(
            db,
            shop.shop_id,
            list(range(1000 + 20 * round_, 1020 + 20 * round_)),
            "entered",
            "event",
        )
        await publish(pool, producer, settings, batch=8, max_rows=8)
    causes = [cause for _, cause in await published(db)]
    # Each publish: 8 live changes and a quarter batch (2) of the backfill's.
    assert (causes.count("event"), causes.count("backfill")) == (40, 10)
    backfilled = [c for c, cause in await published(db) if cause == "backfill"]
    assert backfilled == sorted(backfilled) == list(range(1, len(backfilled) + 1))


async def test_a_deleted_shops_changes_go_with_it_and_never_stall_the_others(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    gone = await create_shop(db, "gone.myshopify.com")
    kept = await create_shop(db, "kept.myshopify.com")
    await write(db, gone.shop_id, list(range(1, 601)), "entered", "backfill")
    await write(db, gone.shop_id, list(range(1, 601)), "entered", "event")
    await db.execute("DELETE FROM shops WHERE id = $1", gone.shop_id)
    await write(db, kept.shop_id, [1, 2, 3], "entered", "backfill")
    await write(db, kept.shop_id, [1, 2], "entered", "event")
    assert await publish(pool, producer, settings) == 5
    assert (
        await db.fetchval("SELECT count(*) FROM segment_changes WHERE shop_id = $1", gone.shop_id)
        == 0
    )
