"""Two batches whose product updates and customers cross must not deadlock.

Batch A updates product P (bought by X) and carries an order of Y; batch B updates product Q
(bought by Y) and carries an order of X. Locking a product's buyers inside the batch made A
take X before its own Y while B held Y and waited for X. A third connection holds X so both
batches are in flight at once, deterministically.
"""

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.domain.reducer import Event
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.scheduler import evaluate_due, fan_out_products
from services.segmenter.runtime.segment_cache import RuleBook
from tests.unit.segmenter.events import NOW, at, order, shopify_event

X, Y = 1001, 1002
P, Q = 100, 200
WAITING = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"


def product(product_id: int, product_type: str, days_ago: float) -> Event:
    payload = {
        "id": product_id,
        "product_type": product_type,
        "vendor": "Acme",
        "title": "T",
        "updated_at": at(days_ago).isoformat(),
    }
    return shopify_event("products/update", payload, event_id=f"p{product_id}-{product_type}")


def bought(order_id: int, customer: int, product_id: int) -> Event:
    payload = order(order_id, "10.00", placed=at(3), customer=customer, lines=[(product_id, None)])
    return shopify_event("orders/create", payload, event_id=f"o{order_id}")


async def apply_in_transaction(conn: asyncpg.Connection, shop_id: int, *events: Event) -> None:
    async with conn.transaction():
        await apply_events(conn, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def blocked_or_done(db: asyncpg.Connection, pid: int, task: Awaitable[Any]) -> None:
    """Wait until the task's connection waits on a lock, or the task has finished."""
    future = asyncio.ensure_future(task)
    async with asyncio.timeout(15):
        while not future.done() and not await db.fetchval(WAITING, pid):
            await asyncio.sleep(0.01)


async def test_crossing_product_updates_and_customers_do_not_deadlock(
    db: asyncpg.Connection, database_url: str, shop: ShopCredentials
) -> None:
    shop_id = shop.shop_id
    await apply_in_transaction(db, shop_id, product(P, "Shirts", 5), product(Q, "Shoes", 5))
    await apply_in_transaction(db, shop_id, bought(1, X, P), bought(2, Y, Q))

    blocker, first, second = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("SELECT 1 FROM customers WHERE customer_id = $1 FOR UPDATE", X)
        batch_a = asyncio.ensure_future(
            apply_in_transaction(first, shop_id, product(P, "Hats", 1), bought(11, Y, Q))
        )
        await blocked_or_done(db, first.get_server_pid(), batch_a)
        batch_b = asyncio.ensure_future(
            apply_in_transaction(second, shop_id, product(Q, "Bags", 1), bought(12, X, P))
        )
        await blocked_or_done(db, second.get_server_pid(), batch_b)
        await holding.rollback()
        async with asyncio.timeout(20):
            results = await asyncio.gather(batch_a, batch_b, return_exceptions=True)
        assert list(results) == [None, None]
    finally:
        for conn in (blocker, first, second):
            await conn.close()

    # The buyers of both products are made due and see the new types.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await fan_out_products(pool, NOW) == 2
        assert await evaluate_due(pool, RuleBook(), NOW) == 2
    finally:
        await pool.close()
    rows = await db.fetch("SELECT customer_id, product_type_counts FROM customers")
    counts = {r["customer_id"]: json.loads(r["product_type_counts"]) for r in rows}
    assert counts == {X: {"Hats": 2}, Y: {"Bags": 2}}


async def test_a_product_change_queued_while_the_scheduler_fans_out_is_not_lost(
    db: asyncpg.Connection, database_url: str, shop: ShopCredentials
) -> None:
    shop_id = shop.shop_id
    await apply_in_transaction(db, shop_id, product(P, "Shirts", 5))
    await apply_in_transaction(db, shop_id, bought(1, X, P))
    await apply_in_transaction(db, shop_id, product(P, "Hats", 3))  # queued, committed
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    batch = await asyncpg.connect(database_url)
    try:
        # A batch changes P again and is still open while the scheduler runs.
        open_batch = batch.transaction()
        await open_batch.start()
        events = [ShopEvent(shop_id, product(P, "Bags", 1))]
        await apply_events(batch, events, RuleBook(), NOW)
        async with asyncio.timeout(15):
            await fan_out_products(pool, NOW)
            await evaluate_due(pool, RuleBook(), NOW)
        await open_batch.commit()
        async with asyncio.timeout(15):
            while await fan_out_products(pool, NOW) or await evaluate_due(pool, RuleBook(), NOW):
                pass
    finally:
        await batch.close()
        await pool.close()
    counts = await db.fetchval(
        "SELECT product_type_counts FROM customers WHERE customer_id = $1", X
    )
    assert json.loads(counts) == {"Bags": 1}
