"""The compliance webhooks through a running segmenter process and the real broker: what it
writes to its topics after customers/redact names nothing of the customer, and the events of a
shop erased by shop/redact are dropped (never dead-lettered with their payloads)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
    shopify_record,
)

CUSTOMER = 913357024681357933
EMAIL = "redact.topics@example.com"
NAME = "Quintessa"
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 100}]}


def customer_record(shop: str, event_id: str, updated: datetime) -> tuple[bytes, bytes]:
    payload = {
        "id": CUSTOMER,
        "email": EMAIL,
        "first_name": NAME,
        "created_at": (updated - timedelta(days=1)).isoformat(),
        "updated_at": updated.isoformat(),
    }
    return shopify_record(shop, "customers/update", payload, event_id, CUSTOMER)


async def customer_exists(db: asyncpg.Connection, shop_id: int) -> bool:
    found = await db.fetchval(
        "SELECT count(*) FROM customers WHERE shop_id = $1 AND customer_id = $2",
        shop_id,
        CUSTOMER,
    )
    return bool(found)


async def test_after_a_redaction_nothing_written_names_the_customer_and_an_erased_shop_is_dropped(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("vip", "VIP", "", VIP, []), now - timedelta(days=1)
        )
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        await produce(
            settings,
            [
                customer_record(shop.domain, "u1", now - timedelta(hours=2)),
                order_event(shop.domain, 71, CUSTOMER, "500.00"),
            ],
        )
        await poll(lambda: customer_exists(db, shop.shop_id), 30, "the customer")
        redact = {
            "shop_id": 1,
            "customer": {"id": CUSTOMER, "email": EMAIL},
            "orders_to_redact": [71],
        }
        await produce(
            settings,
            [shopify_record(shop.domain, "customers/redact", redact, "r1", CUSTOMER)],
        )
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_privacy_requests_total", 1, kind="customer_redacted"
            ),
            30,
            "the redaction",
        )
        assert not await customer_exists(db, shop.shop_id)
        # Kafka still holds the customer's events; a replay of them, and a later one, are
        # dropped.
        await produce(
            settings,
            [
                customer_record(shop.domain, "u1", now - timedelta(hours=2)),
                customer_record(shop.domain, "u2", now - timedelta(hours=1)),
                order_event(shop.domain, 72, CUSTOMER, "900.00"),
            ],
        )
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_segmenter_events_total", 2, outcome="erased"
            ),
            30,
            "the dropped events",
        )
        assert not await customer_exists(db, shop.shop_id)

        secrets_before = await db.fetchval("SELECT count(*) FROM shops WHERE id = $1", shop.shop_id)
        assert secrets_before == 1
        erase_shop = {"shop_id": 1, "shop_domain": shop.domain}
        await produce(
            settings, [shopify_record(shop.domain, "shop/redact", erase_shop, "s1", None)]
        )
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_privacy_requests_total", 1, kind="shop_redacted"
            ),
            30,
            "the shop's erasure",
        )
        assert await db.fetchval("SELECT count(*) FROM shops WHERE id = $1", shop.shop_id) == 0
        assert await db.fetchval("SELECT count(*) FROM segments") == 0
        # The shop's events still in Kafka, and a late one, are dropped, not dead-lettered.
        erased_before = await segmenter.metric("segflow_segmenter_events_total", outcome="erased")
        await produce(settings, [customer_record(shop.domain, "u3", now)])
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_segmenter_events_total", erased_before + 1, outcome="erased"
            ),
            30,
            "the erased shop's event dropped",
        )
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    bootstrap = settings.kafka_bootstrap_servers or ""
    assert await drain_topic(bootstrap, settings.topic_dead_letter) == []
    changes = await drain_topic(bootstrap, settings.topic_segment_changes)
    # Changes name a customer by id, never by its data; none was written after the erasure.
    assert len(changes) == 1
    assert all(EMAIL.encode() not in c.value and NAME.encode() not in c.value for c in changes)
    log = segmenter.log_tail(10**7)
    assert EMAIL not in log and NAME not in log
