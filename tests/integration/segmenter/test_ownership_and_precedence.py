"""Against a real PostgreSQL: order ownership follows the newest payload, imports never
override newer live values, and engagement events are not counted twice after the dedupe
window."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.domain.reducer import Event
from services.segmenter.importer.runner import import_files
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.scheduler import Scheduler
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.unit.segmenter.events import NOW, at, custom_event, order, shopify_event

ALICE, BOB = 501, 502
FIXTURES = Path(__file__).parents[2] / "fixtures" / "import"


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> None:
    async with db.transaction():
        await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def owner_and_counts(db: asyncpg.Connection, shop_id: int) -> tuple[Any, dict[int, int]]:
    owner = await db.fetchval("SELECT customer_id FROM orders WHERE order_id = 1")
    rows = await db.fetch(
        "SELECT customer_id, orders_count, email FROM customers WHERE shop_id = $1", shop_id
    )
    return owner, {r["customer_id"]: r["orders_count"] for r in rows}


def owned_by(customer: int, updated_hours_ago: float, email: str) -> dict[str, Any]:
    payload = order(1, "50.00", placed=at(1), updated=at(updated_hours_ago / 24))
    payload["customer"] = {"id": customer, "email": email, "updated_at": None}
    return payload


async def test_a_stale_delivery_does_not_move_an_order_back(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    # orders/updated gave the order to Bob at 02:00; a late orders/create (Alice, 01:00).
    newer = shopify_event("orders/updated", owned_by(BOB, 10, "bob@x.io"), event_id="u")
    older = shopify_event("orders/create", owned_by(ALICE, 11, "alice@x.io"), event_id="c")
    for events in ((newer, older), (older, newer)):
        await db.execute("TRUNCATE customers, orders, processed_events")
        for event in events:
            await run(db, shop.shop_id, event)
        owner, counts = await owner_and_counts(db, shop.shop_id)
        assert owner == BOB
        assert counts.get(BOB) == 1
        assert counts.get(ALICE, 0) == 0
    # Each customer keeps their own attributes; Alice's never land on Bob.
    emails = dict(await db.fetch("SELECT customer_id, email FROM customers"))
    assert emails == {ALICE: "alice@x.io", BOB: "bob@x.io"}


async def test_both_deliveries_in_one_batch_give_the_same_owner(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    newer = shopify_event("orders/updated", owned_by(BOB, 10, "bob@x.io"), event_id="u")
    older = shopify_event("orders/create", owned_by(ALICE, 11, "alice@x.io"), event_id="c")
    for events in ((newer, older), (older, newer)):
        await db.execute("TRUNCATE customers, orders, processed_events")
        await run(db, shop.shop_id, *events)
        owner, counts = await owner_and_counts(db, shop.shop_id)
        assert (owner, counts.get(BOB), counts.get(ALICE, 0)) == (BOB, 1, 0)


CSV = (
    "Customer ID,Email,Accepts Email Marketing,Default Address City,Total Spent,Total Orders,Tags\n"
    "'{customer},old@example.com,yes,Paris,900.00,3,vip\n"
)


async def test_a_csv_import_after_a_live_unsubscribe_does_not_resubscribe(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials, tmp_path: Path
) -> None:
    customer = 7001
    unsubscribe = shopify_event(
        "customers_email_marketing_consent/update",
        {
            "customer_id": customer,
            "email_address": "new@example.com",
            "email_marketing_consent": {
                "state": "unsubscribed",
                "consent_updated_at": at(1).isoformat(),
            },
        },
        event_id="consent",
    )
    await run(db, shop.shop_id, replace(unsubscribe, customer_id=customer))
    export = tmp_path / "customers_export.csv"
    export.write_text(CSV.format(customer=customer))
    report = await import_files(pool, shop.domain, [export], now=NOW)
    assert report.events_applied == 1
    row = await db.fetchrow("SELECT * FROM customers WHERE customer_id = $1", customer)
    assert row["accepts_email_marketing"] is False
    assert row["email"] == "new@example.com"
    # What the live side never said, the export fills in.
    assert (row["city"], row["orders_count"], list(row["tags"])) == ("Paris", 3, ["vip"])


async def test_an_engagement_event_replayed_after_the_dedupe_window_counts_once(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials, settings: Settings
) -> None:
    viewed = custom_event("page_viewed", when=at(0))
    other = shopify_event("orders/create", order(9, "5.00", placed=at(1)), event_id="o9")
    await run(db, shop.shop_id, viewed, other)
    # processed_at is the database's own (wall) time, like the purge's.
    later = datetime.now(UTC) + timedelta(days=settings.dedupe_retention_days + 1)
    scheduler = Scheduler(settings, pool, None, None, lambda: NOW)  # type: ignore[arg-type]
    assert await scheduler.purge_processed_events(now=later) == 1  # the order's id went
    engagement = await db.fetch("SELECT topic FROM processed_engagement_events")
    assert [r["topic"] for r in engagement] == ["custom/page_viewed"]
    await run(db, shop.shop_id, viewed)
    assert await db.fetchval("SELECT page_views FROM customers") == 1


async def test_an_order_nobody_holds_goes_to_the_customer_an_older_delivery_names(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    named = shopify_event("orders/create", owned_by(ALICE, 11, "alice@x.io"), event_id="c")
    guest = order(1, "50.00", placed=at(1), updated=at(10 / 24), customer=None)
    newer_guest = shopify_event("orders/updated", guest, event_id="u")
    for events in ((named, newer_guest), (newer_guest, named)):
        await db.execute("TRUNCATE customers, orders, processed_events")
        for event in events:
            await run(db, shop.shop_id, event)
        owner, counts = await owner_and_counts(db, shop.shop_id)
        assert (owner, counts.get(ALICE)) == (ALICE, 1)


async def test_an_imports_own_evaluations_are_bulk_changes(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    apparel = {
        "all": [
            {
                "name": "product_type_order_counts",
                "operator": "count_at_least",
                "value": {"key": "Apparel", "count": 1},
            }
        ]
    }
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("apparel", "Apparel", "", apparel, []), NOW
        )
    # The products file comes last: the buyers are evaluated again at the end of the import.
    await import_files(
        pool,
        shop.domain,
        [FIXTURES / "orders_bulk.jsonl", FIXTURES / "products_bulk.jsonl"],
        now=NOW,
    )
    causes = {r["cause"] for r in await db.fetch("SELECT cause FROM segment_changes")}
    assert causes == {"import"}
    assert await db.fetchval("SELECT count(*) FROM memberships") > 0
    assert await db.fetchval("SELECT count(*) FROM product_fanout") == 0
