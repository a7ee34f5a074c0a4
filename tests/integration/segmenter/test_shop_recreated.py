"""A shop deleted and registered again gets a new id: the running segmenter follows it."""

from pathlib import Path

import asyncpg

from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.storage.queries import dedupe_id
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)

CUSTOMER = 555


async def applied_to(db: asyncpg.Connection, shop_id: int, orders: int) -> bool:
    found = await db.fetchval(
        "SELECT orders_count FROM customers WHERE shop_id = $1 AND customer_id = $2",
        shop_id,
        CUSTOMER,
    )
    return bool(found == orders)


async def test_events_of_a_recreated_shop_apply_to_its_new_id_and_of_a_deleted_one_dead_letter(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        await produce(settings, [order_event(shop.domain, 1, CUSTOMER, "10.00")])
        await poll(lambda: applied_to(db, shop.shop_id, 1), 30, "the first order")

        await db.execute("DELETE FROM shops WHERE id = $1", shop.shop_id)
        again = await create_shop(db, shop.domain)
        assert again.shop_id != shop.shop_id
        await produce(settings, [order_event(shop.domain, 2, CUSTOMER, "20.00")])
        await poll(lambda: applied_to(db, again.shop_id, 1), 30, "the order of the new shop")
        spent = await db.fetchval(
            "SELECT total_spent FROM customers WHERE shop_id = $1", again.shop_id
        )
        assert str(spent) == "20.00"
        events = await db.fetch("SELECT shop_id, event_id FROM processed_events")
        assert [tuple(r) for r in events] == [(again.shop_id, dedupe_id("order-2"))]

        # Deleted for good: its next event is an unknown shop's, not a processing error.
        await db.execute("DELETE FROM shops WHERE id = $1", again.shop_id)
        await produce(settings, [order_event(shop.domain, 3, CUSTOMER, "30.00")])
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_segmenter_dead_letters_total", 1, reason="unknown_shop"
            ),
            30,
            "the dead letter",
        )
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    dead = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_dead_letter)
    assert [d.headers["reason"] for d in dead] == [b"unknown_shop"]
    assert b'"event_id":"order-3"' in dead[0].value
