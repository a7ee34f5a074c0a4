"""A moved moment of Shopify's totals, through `queries.orders_crossing` and PostgreSQL, for the
orders the SQL filter has to get right beyond "placed after the moment": an order without a
placed time whose refund falls between the moments, a refund without a time, a refund in the
customer's currency, and an order that changes hands in the batch that moves the moment."""

from dataclasses import replace
from datetime import datetime
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
from tests.unit.segmenter.events import CUSTOMER, NOW, at, order, shopify_event

OTHER = CUSTOMER + 1
READ_EVERY_ORDER = queries.orders_of_customers


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> None:
    async with db.transaction():
        await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def stored_and_recomputed(
    db: asyncpg.Connection, shop_id: int, customer: int
) -> tuple[Any, Any]:
    """The customer's stored facts, and the facts derived from every stored order."""
    row = await db.fetchrow(
        "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2", shop_id, customer
    )
    key = (shop_id, customer)
    orders = (await READ_EVERY_ORDER(db, [key])).get(key, {})
    state = replace(state_from_row(row, {}), orders=orders)
    return facts_from_row(row), derive_facts(state, {}, row["evaluated_at"])[0]


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


def summary(customer: int, count: int, spent: str, when: datetime) -> Event:
    payload = {
        "customerId": f"gid://shopify/Customer/{customer}",
        "numberOfOrders": str(count),
        "amountSpent": {"amount": spent, "currencyCode": "USD"},
    }
    event = shopify_event(
        "customers/purchasing_summary", payload, event_id=f"summary:{customer}:{when}", when=when
    )
    return replace(event, customer_id=customer)


def refund_in_presentment(
    refund_id: int, order_id: int, amount: str, when: datetime | None
) -> dict[str, Any]:
    """A refund whose transaction says only the customer's currency (converted at the
    order's rate); without `when`, a refund of unknown time."""
    stamp = when.isoformat() if when is not None else None
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": stamp,
        "processed_at": stamp,
        "refund_line_items": [],
        "transactions": [{"kind": "refund", "status": "success", "amount": amount}],
        "order_adjustments": [],
    }


def converted_order_without_time(order_id: int, customer: int) -> dict[str, Any]:
    """100.00 in shop money, paid as 80.00 in the customer's currency; no placed time."""
    payload = order(order_id, "100.00", placed=at(30), customer=customer)
    payload["processed_at"] = payload["created_at"] = None
    payload["total_price_set"] = {
        "shop_money": {"amount": "100.00", "currency_code": "USD"},
        "presentment_money": {"amount": "80.00", "currency_code": "EUR"},
    }
    return payload


async def test_an_unplaced_converted_order_refunded_between_the_moments_is_retaken(
    db: asyncpg.Connection, shop: ShopCredentials, reloads: list[object]
) -> None:
    shop_id = shop.shop_id
    unplaced = converted_order_without_time(1, CUSTOMER)
    await run(db, shop_id, shopify_event("orders/create", unplaced))
    await run(db, shop_id, shopify_event("orders/create", order(2, "50.00", placed=at(20))))
    await run(db, shop_id, summary(CUSTOMER, 2, "150.00", at(10)))
    refunds = [
        refund_in_presentment(11, 1, "8.00", at(5)),  # between the moments: 10.00 in shop money
        refund_in_presentment(12, 1, "4.00", None),  # no time: by every moment
        refund_in_presentment(13, 2, "4.00", at(1)),  # after both moments
    ]
    for refund in refunds:
        await run(db, shop_id, shopify_event("refunds/create", refund, event_id=str(refund["id"])))
    stored, recomputed = await stored_and_recomputed(db, shop_id, CUSTOMER)
    assert stored == recomputed
    reloads.clear()
    await run(db, shop_id, summary(CUSTOMER, 2, "130.00", at(3)))
    stored, recomputed = await stored_and_recomputed(db, shop_id, CUSTOMER)
    assert stored == recomputed
    # Shopify's 130.00 is below what it knew of the two orders then (85.00 + 50.00); the
    # refund since then comes off that.
    assert (stored.orders_count, stored.total_spent) == (2, 131)
    assert reloads == [], "the customer's whole order history was read"
    # And back again, to the first moment.
    await run(db, shop_id, summary(CUSTOMER, 2, "150.00", at(10)))
    stored, recomputed = await stored_and_recomputed(db, shop_id, CUSTOMER)
    assert stored == recomputed
    assert reloads == [], "the customer's whole order history was read"


async def test_an_order_changing_hands_as_the_new_owners_moment_moves(
    db: asyncpg.Connection, shop: ShopCredentials, reloads: list[object]
) -> None:
    """In one batch: order 3 moves from OTHER to CUSTOMER, whose totals move; OTHER's too.
    (Order 3 is neither OTHER's first, last nor largest order, and the refund leaves
    CUSTOMER's largest alone: nothing here needs a rebuild.)"""
    shop_id = shop.shop_id
    history = ((1, CUSTOMER, 39), (2, CUSTOMER, 38), (3, OTHER, 37), (4, OTHER, 38), (5, OTHER, 36))
    for n, customer, days_ago in history:
        placed = order(n, f"{n}0.00", placed=at(days_ago), customer=customer)
        await run(db, shop_id, shopify_event("orders/create", placed, when=at(days_ago)))
    await run(
        db, shop_id, summary(CUSTOMER, 2, "30.00", at(30)), summary(OTHER, 3, "120.00", at(30))
    )
    reloads.clear()
    moved = order(3, "30.00", placed=at(37), updated=at(2), customer=CUSTOMER)
    moved["customer"] = {**moved["customer"], "orders_count": 3, "total_spent": "60.00"}
    await run(
        db,
        shop_id,
        shopify_event("orders/updated", moved, when=at(2)),
        summary(OTHER, 2, "90.00", at(2)),
        shopify_event(
            "refunds/create", refund_in_presentment(14, 1, "5.00", at(20)), event_id="14"
        ),
    )
    for customer in (CUSTOMER, OTHER):
        stored, recomputed = await stored_and_recomputed(db, shop_id, customer)
        assert stored == recomputed, customer
    assert reloads == [], "a whole order history was read"
