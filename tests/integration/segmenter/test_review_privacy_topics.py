"""Hostile review of the privacy work (issue 14) through a running segmenter process and the
real broker: what reaches the dead-letter topic after customers/redact, and shop/redact against
a domain registered again. Expected to fail until the findings are fixed."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    committed_offsets,
    poll,
    produce,
    segmenter_env,
    shopify_record,
)

CUSTOMER = 913357024681357944
EMAIL = "review.redact@example.com"
NAME = "Ottoline"


def customer_update(
    shop: str, event_id: str, received_at: datetime | None = None, **extra: Any
) -> tuple[bytes, bytes]:
    at = received_at or datetime.now(UTC)
    payload = {
        "id": CUSTOMER,
        "email": EMAIL,
        "first_name": NAME,
        "phone": "+15550009944",
        "created_at": (at - timedelta(days=1)).isoformat(),
        "updated_at": at.isoformat(),
    } | extra
    return shopify_record(shop, "customers/update", payload, event_id, CUSTOMER, received_at)


async def customer_in(db: asyncpg.Connection, shop_id: int) -> bool:
    found = await db.fetchval(
        "SELECT count(*) FROM customers WHERE shop_id = $1 AND customer_id = $2",
        shop_id,
        CUSTOMER,
    )
    return bool(found)


async def consumed(settings: Settings, ends: dict[int, int]) -> bool:
    """The segmenter group has committed past these offsets (the records were handled)."""
    committed = await committed_offsets(settings)
    return all(committed.get(p, 0) >= end for p, end in ends.items())


async def test_review_privacy_an_erased_customers_unreadable_event_is_not_dead_lettered(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        await produce(settings, [customer_update(shop.domain, "u1")])
        await poll(lambda: customer_in(db, shop.shop_id), 30, "the customer")
        redact = {"shop_id": 1, "customer": {"id": CUSTOMER, "email": EMAIL}}
        await produce(
            settings, [shopify_record(shop.domain, "customers/redact", redact, "r1", CUSTOMER)]
        )
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_privacy_requests_total", 1, kind="customer_redacted"
            ),
            30,
            "the redaction",
        )
        # Shopify keeps sending the customer's updates (a retry, or one sent before its own
        # erasure); this one has a field segflow cannot read (say, a new API version's type).
        ends = await produce(settings, [customer_update(shop.domain, "u2", orders_count="12+")])
        await poll(lambda: consumed(settings, ends), 30, "the late update handled")
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    dead = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_dead_letter)
    # The erased customer's email, name and phone must not be written again to a topic.
    leaked = [d.headers.get("reason") for d in dead if EMAIL.encode() in d.value]
    assert leaked == []


async def test_review_privacy_a_redelivered_shop_redact_does_not_erase_the_shop_registered_again(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    erase_shop = shopify_record(
        shop.domain, "shop/redact", {"shop_id": 1, "shop_domain": shop.domain}, "s1", None
    )
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        await produce(settings, [erase_shop])
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_privacy_requests_total", 1, kind="shop_redacted"
            ),
            30,
            "the shop's erasure",
        )
        # The merchant installs the app again: a new shop under the same domain.
        again = await create_shop(db, shop.domain)
        await produce(settings, [customer_update(shop.domain, "new-1")])
        await poll(lambda: customer_in(db, again.shop_id), 30, "the new shop's customer")
        # The same shop/redact delivered again: Shopify retries a webhook it saw no 200 for
        # (the same event id), or the segmenter replays it after a crash before its commit.
        ends = await produce(settings, [erase_shop])
        await poll(lambda: consumed(settings, ends), 30, "the redelivery handled")
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    assert await db.fetchval("SELECT count(*) FROM shops WHERE id = $1", again.shop_id) == 1
    assert await customer_in(db, again.shop_id)


async def test_review_privacy_an_erased_shops_old_events_stay_out_of_the_shop_registered_again(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    before = datetime.now(UTC) - timedelta(hours=1)
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
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
        again = await create_shop(db, shop.domain)
        # An event of the erased shop's customer, received before the shop/redact, still
        # waiting on a lagging partition (shop/redact is keyed by the shop, its customers'
        # events by customer).
        ends = await produce(settings, [customer_update(shop.domain, "old-1", before)])
        await poll(lambda: consumed(settings, ends), 30, "the old event handled")
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    assert not await customer_in(db, again.shop_id)
    assert await db.fetchval("SELECT count(*) FROM customers WHERE email = $1", EMAIL) == 0
