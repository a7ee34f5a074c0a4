"""Journeys' storage and enrolment from segment changes, with a real PostgreSQL: the shipped
journeys are installed once per shop; the tagger's consumer batch enrols and exits customers
in the same transaction as its tag marks; duplicates and stale changes change nothing; the
holdout is the stable draw."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from services.common.envelope import EnvelopeMeta, encode_envelope
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.health import ComponentHealth
from services.tagger.journeys.holdout import Group, assign_group
from services.tagger.journeys_store import install_journeys
from services.tagger.metrics import TaggerMetrics
from services.tagger.worker import TaggerWorker

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def change_value(
    shop: str, customer_id: int, seq: int, segment: str, change: str, cause: str = "event"
) -> bytes:
    return orjson.dumps(
        {
            "change_id": f"00000000-0000-0000-0000-{seq:012d}",
            "seq": seq,
            "shop": shop,
            "customer_id": str(customer_id),
            "segment": {"id": "1", "handle": segment, "version": 1},
            "change": change,
            "cause": cause,
            "cause_event_id": None,
            "received_at": None,
            "changed_at": NOW.isoformat(),
        }
    )


class FakeConsumer:
    """Only what TaggerWorker.process calls: commit, and highwater for the lag gauge."""

    def __init__(self) -> None:
        self.committed: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)

    def highwater(self, tp: TopicPartition) -> int | None:
        # As aiokafka's before its first fetch of the partition: not known, so no lag is set.
        return None


def batch(topic: str, values: list[bytes]) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
    tp = TopicPartition(topic, 0)
    return {
        tp: [
            ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), [])
            for offset, value in enumerate(values)
        ]
    }


def worker(settings: Settings, pool: asyncpg.Pool) -> TaggerWorker:
    return TaggerWorker(
        settings,
        pool,
        FakeConsumer(),
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        lambda: None,
        clock=lambda: NOW,
    )


async def test_shipped_journeys_are_installed_once(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    assert await install_journeys(db, shop.shop_id, NOW) == 3
    assert await install_journeys(db, shop.shop_id, NOW) == 0
    rows = await db.fetch(
        "SELECT j.handle, j.trigger_segment, j.current_version, v.definition->>'handle' AS d"
        " FROM journeys j JOIN journey_versions v ON v.journey_id = j.id ORDER BY j.handle"
    )
    assert [(r["handle"], r["trigger_segment"], r["current_version"], r["d"]) for r in rows] == [
        ("vip-care", "vip", 1, "vip-care"),
        ("welcome", "new-customer", 1, "welcome"),
        ("win-back", "churn-risk", 1, "win-back"),
    ]


async def test_changes_enrol_and_exit_in_the_consumer_batch(
    settings: Settings, pool: asyncpg.Pool, db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    await install_journeys(db, shop.shop_id, NOW)
    topic = settings.topic_segment_changes
    domain = shop.domain
    entries = [change_value(domain, c, c, "new-customer", "entered") for c in range(1, 41)]
    tagger = worker(settings, pool)
    await tagger.process(batch(topic, entries))
    # The same batch again (a replay after a crash before the offset commit): nothing new.
    await tagger.process(batch(topic, entries))
    rows = await db.fetch(
        "SELECT e.customer_id, e.grp, e.state, e.step_index, e.next_due_at, j.id AS journey_id"
        " FROM journey_enrolments e JOIN journeys j ON j.id = e.journey_id ORDER BY customer_id"
    )
    assert [r["customer_id"] for r in rows] == list(range(1, 41))
    journey_id = rows[0]["journey_id"]
    for r in rows:
        expected = assign_group(journey_id, r["customer_id"], Decimal("0.1"))
        assert Group(r["grp"]) is expected
        assert r["state"] == "active" and r["step_index"] == 0
        # The welcome email falls due an hour after entry.
        assert r["next_due_at"] == NOW + timedelta(hours=1)
    # A tag mark came with every change too, in the same transaction.
    assert await db.fetchval("SELECT count(*) FROM tag_work") == 40

    # Customer 1 leaves the segment; an old, replayed change of customer 2 is ignored; a bulk
    # entry (an import) enrols nobody in the welcome journey; another segment enrols nobody.
    later = [
        change_value(domain, 1, 100, "new-customer", "exited"),
        change_value(domain, 2, 2, "new-customer", "exited"),
        change_value(domain, 50, 101, "new-customer", "entered", cause="import"),
        change_value(domain, 51, 102, "high-value", "entered"),
    ]
    await tagger.process(batch(topic, later))
    states = {
        r["customer_id"]: (r["state"], r["exit_reason"])
        for r in await db.fetch("SELECT customer_id, state, exit_reason FROM journey_enrolments")
    }
    assert states[1] == ("exited", "segment_exited")
    assert states[2] == ("active", None)
    assert 50 not in states and 51 not in states
    seen = await db.fetchval(
        "SELECT seen_seq FROM journey_seen WHERE journey_id = $1 AND customer_id = 1", journey_id
    )
    assert seen == 100
    # Re-entry is "never" for the welcome series.
    await tagger.process(batch(topic, [change_value(domain, 1, 103, "new-customer", "entered")]))
    count = await db.fetchval("SELECT count(*) FROM journey_enrolments WHERE customer_id = 1")
    assert count == 1


def order_value(shop: str, order_id: int, customer_id: int, total: str, at: datetime) -> bytes:
    payload = {
        "id": order_id,
        "customer": {"id": customer_id},
        "created_at": at.isoformat(),
        "total_price": total,
    }
    meta = EnvelopeMeta(
        event_id=f"order-{order_id}",
        shop=shop,
        topic="orders/create",
        source="shopify",
        customer_id=str(customer_id),
        occurred_at=at,
        received_at=at,
    )
    return encode_envelope(meta, orjson.dumps(payload))


async def test_orders_in_the_events_topic_count_conversions_and_end_the_goal(
    settings: Settings, pool: asyncpg.Pool, db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    await install_journeys(db, shop.shop_id, NOW)
    tagger = worker(settings, pool)
    entries = [change_value(shop.domain, c, c, "new-customer", "entered") for c in (1, 2)]
    await tagger.process(batch(settings.topic_segment_changes, entries))
    orders = [
        order_value(shop.domain, 901, 1, "80.00", NOW + timedelta(hours=2)),
        order_value(shop.domain, 901, 1, "80.00", NOW + timedelta(hours=2)),  # redelivered
        order_value(shop.domain, 902, 2, "20.00", NOW + timedelta(days=9)),  # after the window
    ]
    await tagger.process(batch(settings.topic_events, orders))
    conversions = await db.fetch(
        "SELECT e.customer_id, c.order_id, c.revenue FROM journey_conversions c"
        " JOIN journey_enrolments e ON e.id = c.enrolment_id"
    )
    assert [(r["customer_id"], r["order_id"], r["revenue"]) for r in conversions] == [
        (1, 901, Decimal("80.00"))
    ]
    states = {
        r["customer_id"]: (r["state"], r["exit_reason"])
        for r in await db.fetch("SELECT customer_id, state, exit_reason FROM journey_enrolments")
    }
    # Both orders were placed after entry: the welcome series' goal exit, window or not.
    assert states == {1: ("exited", "order_placed"), 2: ("exited", "order_placed")}


async def test_customers_redact_erases_the_customers_journey_data(
    settings: Settings, pool: asyncpg.Pool, db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    await install_journeys(db, shop.shop_id, NOW)
    tagger = worker(settings, pool)
    entries = [change_value(shop.domain, c, c, "new-customer", "entered") for c in (1, 2)]
    await tagger.process(batch(settings.topic_segment_changes, entries))
    await tagger.process(
        batch(settings.topic_events, [order_value(shop.domain, 901, 1, "80.00", NOW)])
    )
    assert await db.fetchval("SELECT count(*) FROM journey_conversions") == 1
    meta = EnvelopeMeta(
        event_id="redact-1",
        shop=shop.domain,
        topic="customers/redact",
        source="shopify",
        customer_id="1",
        occurred_at=NOW,
        received_at=NOW,
    )
    payload = {"shop_id": 1, "customer": {"id": 1}, "orders_to_redact": [901]}
    await tagger.process(
        batch(settings.topic_events, [encode_envelope(meta, orjson.dumps(payload))])
    )
    left = await db.fetch("SELECT customer_id FROM journey_enrolments")
    assert [r["customer_id"] for r in left] == [2]
    assert await db.fetchval("SELECT count(*) FROM journey_conversions") == 0
    assert await db.fetchval("SELECT count(*) FROM journey_seen WHERE customer_id = 1") == 0
