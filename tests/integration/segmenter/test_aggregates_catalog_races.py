"""Aggregates against a concurrent catalog: an order in flight while its product changes type,
and an import stopped between its products and its end. Each must end with the facts a
recompute from the stored orders and today's catalog gives (found by review)."""

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.domain.derive import derive_facts
from services.segmenter.domain.reducer import Event
from services.segmenter.importer.runner import Progress, import_files
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.scheduler import evaluate_due, fan_out_products
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage import queries
from services.segmenter.storage.rows import facts_from_row, state_from_row
from tests.unit.segmenter.events import CUSTOMER, NOW, at, order, shopify_event

PRODUCT = 632910392


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> Any:
    async with db.transaction():
        return await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def customer_row(
    db: asyncpg.Connection, shop_id: int, customer: int = CUSTOMER
) -> asyncpg.Record:
    return await db.fetchrow(
        "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2", shop_id, customer
    )


async def recomputed_facts(db: asyncpg.Connection, shop_id: int, customer: int = CUSTOMER) -> Any:
    """The facts the previous design derives from every stored order and today's catalog."""
    row = await customer_row(db, shop_id, customer)
    key = (shop_id, customer)
    orders = (await queries.orders_of_customers(db, [key])).get(key, {})
    ids = {(shop_id, p) for o in orders.values() for p in o.product_ids}
    catalog = (await queries.load_catalog(db, ids)).get(shop_id, {})
    state = replace(state_from_row(row, {}), orders=orders)
    return derive_facts(state, catalog, row["evaluated_at"])[0]


def product(product_type: str, updated: float) -> Event:
    payload = {
        "id": PRODUCT,
        "product_type": product_type,
        "vendor": "Acme",
        "title": "Tee",
        "updated_at": at(updated).isoformat(),
    }
    return shopify_event("products/update", payload, event_id=f"p-{product_type}")


def touch(email: str, updated: float, customer: int = CUSTOMER) -> Event:
    """A customers/update that changes nothing about orders."""
    payload = {"id": customer, "email": email, "updated_at": at(updated).isoformat()}
    return shopify_event("customers/update", payload, event_id=f"c-{email}")


async def test_an_order_in_flight_while_its_product_changes_type_ends_with_the_new_type(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    """Finding: the product fan-out misses an order committed after it ran.

    Batch A (an orders/create naming product P, type Apparel) reads the catalog and has not
    committed yet; batch B changes P to Shoes and commits; the scheduler's fan-out looks for
    P's buyers, and A's order is not visible yet, so nobody is made due. A commits with the
    contribution {Apparel}. The previous design re-derived types from the catalog at every
    evaluation, so the next event fixed it; now the aggregates keep Apparel for ever.
    """
    shop_id = shop.shop_id
    await run(db, shop_id, product("Apparel", 3))
    assert await fan_out_products(pool, NOW) == 1  # nobody bought it yet

    async with pool.acquire() as in_flight:
        tx = in_flight.transaction()
        await tx.start()
        placed = order(1, "50.00", placed=at(1), lines=[(PRODUCT, "Acme")])
        await apply_events(
            in_flight,
            [ShopEvent(shop_id, shopify_event("orders/create", placed, event_id="o1"))],
            RuleBook(),
            NOW,
        )
        # Another partition's batch changes the product's type meanwhile.
        change = asyncio.ensure_future(run(db, shop_id, product("Shoes", 0.5)))
        done, _ = await asyncio.wait({change}, timeout=10)
        if done:
            # The scheduler's round while the order's batch is still in flight.
            await fan_out_products(pool, NOW)
        await tx.commit()
    await change
    await fan_out_products(pool, NOW)
    await evaluate_due(pool, RuleBook(), NOW)

    # Any later event for the customer: the previous design would re-derive Shoes here.
    await run(db, shop_id, touch("later@example.com", 0.1))
    row = await customer_row(db, shop_id)
    expected = await recomputed_facts(db, shop_id)
    assert expected.product_type_counts == {"Shoes": 1}
    assert facts_from_row(row).product_type_counts == expected.product_type_counts


IMPORT_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "import"
ADA = 7985351721238


class Killed(Exception):
    """The import process dying right after a batch committed."""


async def test_an_import_stopped_after_its_products_batch_gives_buyers_their_types_when_run_again(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    """Finding: an import keeps the products whose type changed in memory
    (`changed_products`) and rebuilds their buyers only at its very end; nothing is queued in
    `product_fanout`. Stopped (killed, Ctrl-C, a crash) after the products' batch committed,
    the buyers' aggregates keep the orders' contributions from before the catalog knew the
    types, and a re-run is all duplicates, so it changes nothing. The previous design
    re-derived types from the catalog at the customer's next event; now they stay missing.
    """
    shop_id = shop.shop_id
    files = [IMPORT_FIXTURES / "orders_bulk.jsonl", IMPORT_FIXTURES / "products_bulk.jsonl"]

    def die_after_products(progress: Progress) -> None:
        if progress.file.endswith("products_bulk.jsonl"):
            raise Killed

    try:
        await import_files(pool, shop.domain, files, now=NOW, progress=die_after_products)
    except Killed:
        pass
    else:
        raise AssertionError("the import was not stopped")
    # The operator runs it again: every row is a duplicate now.
    await import_files(pool, shop.domain, files, now=NOW)
    # A live event for the buyer, about something else.
    await run(db, shop_id, touch("ada-later@example.com", 0.1, ADA))
    expected = await recomputed_facts(db, shop_id, ADA)
    assert expected.product_type_counts == {"Apparel": 1, "Shoes": 1}
    row = await customer_row(db, shop_id, ADA)
    assert facts_from_row(row).product_type_counts == expected.product_type_counts
