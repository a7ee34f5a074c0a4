"""Shopify's totals come with a new as-of moment on almost every delivery (orders on API
versions before 2024-10, customers/update, customers/purchasing_summary). A moved moment
re-takes only the orders placed or refunded since it, never the whole order history, and the
facts still equal a recompute from every stored order."""

from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from services.common.shops import ShopCredentials
from services.segmenter.domain.derive import derive_facts
from services.segmenter.domain.reducer import Event
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage import queries
from services.segmenter.storage.rows import facts_from_row, state_from_row
from tests.unit.segmenter.events import CUSTOMER, NOW, at, order, refund, shopify_event

# Captured before a test counts the pipeline's calls, so the reference is not counted.
READ_EVERY_ORDER = queries.orders_of_customers


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> None:
    async with db.transaction():
        await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def customer_row(db: asyncpg.Connection, shop_id: int) -> asyncpg.Record:
    return await db.fetchrow(
        "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2", shop_id, CUSTOMER
    )


async def recomputed_facts(db: asyncpg.Connection, shop_id: int) -> Any:
    """The facts derived from every stored order (the reference the aggregates must equal)."""
    row = await customer_row(db, shop_id)
    key = (shop_id, CUSTOMER)
    orders = (await READ_EVERY_ORDER(db, [key])).get(key, {})
    state = replace(state_from_row(row, {}), orders=orders)
    return derive_facts(state, {}, row["evaluated_at"])[0]


@pytest.fixture
def reloads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The customers whose whole order history the pipeline reads from now on."""
    seen: list[object] = []
    real = queries.orders_of_customers

    async def counting(conn: asyncpg.Connection, keys: Any) -> Any:
        keys = list(keys)
        seen.extend(keys)
        return await real(conn, keys)

    monkeypatch.setattr(queries, "orders_of_customers", counting)
    return seen


def with_totals(payload: dict[str, Any], count: int, spent: str) -> dict[str, Any]:
    """A 2024-07-shaped order: its embedded customer carries Shopify's totals."""
    customer = {**payload["customer"], "orders_count": count, "total_spent": spent}
    return {**payload, "customer": customer}


def summary(count: int, spent: str, when: Any) -> Event:
    """customers/purchasing_summary names its customer by GID."""
    payload = {
        "customerId": f"gid://shopify/Customer/{CUSTOMER}",
        "numberOfOrders": str(count),
        "amountSpent": {"amount": spent, "currencyCode": "USD"},
    }
    return replace(
        shopify_event("customers/purchasing_summary", payload, when=when), customer_id=CUSTOMER
    )


async def test_an_order_carrying_shopifys_totals_reads_no_earlier_order(
    db: asyncpg.Connection, shop: ShopCredentials, reloads: list[object]
) -> None:
    shop_id = shop.shop_id
    for n in range(1, 4):
        placed = with_totals(order(n, "100.00", placed=at(10 - n)), n, f"{n * 100}.00")
        await run(db, shop_id, shopify_event("orders/create", placed, when=at(10 - n)))
    reloads.clear()
    placed = with_totals(order(4, "100.00", placed=at(1)), 4, "400.00")
    await run(db, shop_id, shopify_event("orders/create", placed, when=at(1)))
    row = await customer_row(db, shop_id)
    assert (row["orders_count"], row["total_spent"]) == (4, 400)
    assert facts_from_row(row) == await recomputed_facts(db, shop_id)
    assert reloads == [], "the customer's whole order history was read"


async def test_a_purchasing_summary_after_each_order_reads_no_earlier_order(
    db: asyncpg.Connection, shop: ShopCredentials, reloads: list[object]
) -> None:
    shop_id = shop.shop_id
    for n in range(1, 4):
        await run(
            db, shop_id, shopify_event("orders/create", order(n, "100.00", placed=at(10 - n)))
        )
    await run(db, shop_id, summary(2, "200.00", at(8)))
    reloads.clear()
    await run(db, shop_id, summary(3, "300.00", at(6.5)))
    row = await customer_row(db, shop_id)
    assert (row["orders_count"], row["total_spent"]) == (3, 300)
    assert facts_from_row(row) == await recomputed_facts(db, shop_id)
    assert reloads == [], "the customer's whole order history was read"


async def test_a_refund_between_two_moments_comes_off_once(
    db: asyncpg.Connection, shop: ShopCredentials, reloads: list[object]
) -> None:
    """Order 1 was placed before the first moment and refunded before the second: moving
    the moment re-takes it (Shopify's new figure already left the refund out)."""
    shop_id = shop.shop_id
    first = with_totals(order(1, "100.00", placed=at(10)), 1, "100.00")
    await run(db, shop_id, shopify_event("orders/create", first, when=at(10)))
    await run(db, shop_id, shopify_event("refunds/create", refund(11, 1, "40.00", when=at(5))))
    row = await customer_row(db, shop_id)
    assert row["total_spent"] == 60
    reloads.clear()
    second = with_totals(order(2, "100.00", placed=at(2)), 2, "160.00")
    await run(db, shop_id, shopify_event("orders/create", second, when=at(2)))
    row = await customer_row(db, shop_id)
    assert (row["orders_count"], row["total_spent"]) == (2, 160)
    assert facts_from_row(row) == await recomputed_facts(db, shop_id)
    assert reloads == [], "the customer's whole order history was read"


async def test_a_late_summary_taken_earlier_moves_nothing(
    db: asyncpg.Connection, shop: ShopCredentials, reloads: list[object]
) -> None:
    """A purchasing summary delivered late, taken before the one held, loses to it."""
    shop_id = shop.shop_id
    for n in range(1, 4):
        await run(
            db, shop_id, shopify_event("orders/create", order(n, "100.00", placed=at(10 - n)))
        )
    await run(db, shop_id, summary(3, "300.00", at(6.5)))
    reloads.clear()
    await run(db, shop_id, summary(2, "250.00", at(7.5)))
    row = await customer_row(db, shop_id)
    assert facts_from_row(row) == await recomputed_facts(db, shop_id)
    assert (row["orders_count"], row["total_spent"]) == (3, 300)
    assert reloads == [], "the customer's whole order history was read"
