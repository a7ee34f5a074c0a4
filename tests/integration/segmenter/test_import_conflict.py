"""An import batch that races a live batch for an order is retried, like the worker's batches.

The live batch holds the order's customer while the import reads the order's owner, then moves
the order to another customer and commits: the import's transaction finds the owner changed
(StaleOwnershipError) and runs again.
"""

import asyncio
import json
from pathlib import Path

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.importer.runner import import_files
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from tests.integration.segmenter.processes import poll
from tests.unit.segmenter.events import NOW, at, order, shopify_event

FIRST, SECOND, IMPORTED = 1001, 1002, 1003
ORDER = 77


async def waiting_for_a_lock(db: asyncpg.Connection) -> bool:
    waiting = await db.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
    return bool(waiting)


async def test_an_import_that_loses_an_order_to_a_live_batch_retries_and_completes(
    database_url: str,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    shop: ShopCredentials,
    tmp_path: Path,
) -> None:
    async with db.transaction():
        placed = shopify_event("orders/create", order(ORDER, "50.00", placed=at(3), customer=FIRST))
        await apply_events(db, [ShopEvent(shop.shop_id, placed)], RuleBook(), NOW)
    exported = order(ORDER, "50.00", placed=at(3), updated=at(1), customer=IMPORTED)
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(exported) + "\n")

    live = await asyncpg.connect(database_url)
    try:
        transaction = live.transaction()
        await transaction.start()
        await live.execute(
            "SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $2 FOR UPDATE",
            shop.shop_id,
            FIRST,
        )
        running = asyncio.create_task(import_files(pool, shop.domain, [path], now=NOW))
        await poll(lambda: waiting_for_a_lock(db), 15, "the import to wait for the customer")
        moved = shopify_event(
            "orders/updated", order(ORDER, "50.00", placed=at(3), updated=at(2), customer=SECOND)
        )
        await apply_events(live, [ShopEvent(shop.shop_id, moved)], RuleBook(), NOW)
        await transaction.commit()
        report = await asyncio.wait_for(running, 30)
    finally:
        await live.close()

    assert report.events_applied == 1
    assert report.rejected_count == 0
    owners = await db.fetch(
        "SELECT customer_id, orders_count FROM customers WHERE shop_id = $1 ORDER BY customer_id",
        shop.shop_id,
    )
    # The order has one owner, whoever won, and is counted once.
    assert sum(r["orders_count"] for r in owners) == 1
    owner = await db.fetchval("SELECT customer_id FROM orders WHERE order_id = $1", ORDER)
    assert [r["customer_id"] for r in owners if r["orders_count"] == 1] == [owner]
