"""One batch in one transaction against a real PostgreSQL: state, memberships, outbox."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.domain.reducer import Event
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.scheduler import evaluate_due, fan_out_products
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.unit.segmenter.events import CUSTOMER, NOW, at, order, refund, shopify_event

VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
APPAREL = {
    "all": [
        {
            "name": "product_type_order_counts",
            "operator": "count_at_least",
            "value": {"key": "Apparel", "count": 1},
        }
    ]
}
CHURN_RISK = {"all": [{"name": "days_since_last_order", "operator": "greater_than", "value": 90}]}


async def add_segment(
    db: asyncpg.Connection, shop_id: int, handle: str, conditions: dict[str, Any]
) -> int:
    async with db.transaction():
        created = await create_segment(
            db, shop_id, SegmentSpec(handle, handle.upper(), "", conditions, []), NOW
        )
    assert created is not None
    return created[0]


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> Any:
    async with db.transaction():
        return await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def customer_row(db: asyncpg.Connection, shop_id: int) -> asyncpg.Record:
    return await db.fetchrow(
        "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2", shop_id, CUSTOMER
    )


async def test_order_over_1000_enters_vip_with_an_outbox_row(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    vip = await add_segment(db, shop.shop_id, "vip", VIP)
    big = order(1, "1500.00", placed=at(1))
    outcome = await run(db, shop.shop_id, shopify_event("orders/create", big, event_id="e1"))
    assert [(c.segment_id, c.change) for c in outcome.changes] == [(vip, "entered")]
    row = await customer_row(db, shop.shop_id)
    assert row["orders_count"] == 1
    assert row["total_spent"] == Decimal("1500.00")
    members = await db.fetch("SELECT customer_id FROM memberships WHERE segment_id = $1", vip)
    assert [m["customer_id"] for m in members] == [CUSTOMER]
    outbox = await db.fetch("SELECT * FROM segment_changes WHERE segment_id = $1", vip)
    assert len(outbox) == 1
    assert outbox[0]["change"] == "entered"
    assert outbox[0]["cause_event_id"] == "e1"
    assert outbox[0]["published_at"] is None


async def test_a_redelivered_event_is_skipped_and_changes_nothing(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    await add_segment(db, shop.shop_id, "vip", VIP)
    event = shopify_event("orders/create", order(1, "1500.00", placed=at(1)), event_id="e1")
    await run(db, shop.shop_id, event)
    again = await run(db, shop.shop_id, event, event)
    assert len(again.duplicates) == 2
    assert again.applied == []
    assert again.changes == []
    assert (await customer_row(db, shop.shop_id))["orders_count"] == 1
    assert await db.fetchval("SELECT count(*) FROM segment_changes") == 1


async def test_create_and_paid_share_nothing_but_the_order(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    payload = order(1, "600.00", placed=at(1))
    await run(
        db,
        shop.shop_id,
        shopify_event("orders/create", payload, event_id="same-action"),
        shopify_event("orders/paid", payload, event_id="same-action"),
    )
    row = await customer_row(db, shop.shop_id)
    assert (row["orders_count"], row["total_spent"]) == (1, Decimal("600.00"))


async def test_refund_before_its_order_is_kept_and_subtracted_once(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    vip = await add_segment(db, shop.shop_id, "vip", VIP)
    refunded = refund(5, 1, "600.00", when=at(1))
    await run(db, shop.shop_id, shopify_event("refunds/create", refunded, event_id="r"))
    assert await customer_row(db, shop.shop_id) is None
    placed = order(1, "1500.00", placed=at(2), refunds=[refunded])
    outcome = await run(db, shop.shop_id, shopify_event("orders/create", placed, event_id="o"))
    row = await customer_row(db, shop.shop_id)
    assert row["total_spent"] == Decimal("900.00")
    assert row["refunds_count"] == 1
    assert outcome.changes == []
    assert await db.fetchval("SELECT count(*) FROM memberships WHERE segment_id = $1", vip) == 0


async def test_product_arriving_after_the_order_resolves_its_type(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    apparel = await add_segment(db, shop.shop_id, "apparel", APPAREL)
    placed = order(1, "50.00", placed=at(2), lines=[(632910392, "Acme")])
    await run(db, shop.shop_id, shopify_event("orders/create", placed, event_id="o"))
    assert (await customer_row(db, shop.shop_id))["top_product_type"] is None
    product = {
        "id": 632910392,
        "product_type": "Apparel",
        "vendor": "Acme",
        "title": "Tee",
        "updated_at": at(1).isoformat(),
    }
    await run(db, shop.shop_id, shopify_event("products/update", product, event_id="p"))
    # The product is queued; the scheduler makes its buyers due, then evaluates them.
    assert await db.fetchval("SELECT count(*) FROM product_fanout") == 1
    assert await fan_out_products(pool, NOW) == 1
    assert (await customer_row(db, shop.shop_id))["next_eval_at"] == NOW
    assert await evaluate_due(pool, RuleBook(), NOW) == 1
    row = await customer_row(db, shop.shop_id)
    assert row["top_product_type"] == "Apparel"
    members = await db.fetch("SELECT customer_id FROM memberships WHERE segment_id = $1", apparel)
    assert [m["customer_id"] for m in members] == [CUSTOMER]
    # An edit that changes neither type nor vendor schedules nobody; an older version loses.
    renamed = {**product, "title": "Better tee", "updated_at": at(0.5).isoformat()}
    older = {**product, "product_type": "Shoes", "updated_at": at(3).isoformat()}
    await run(
        db,
        shop.shop_id,
        shopify_event("products/update", renamed, event_id="p2"),
        shopify_event("products/update", older, event_id="p3"),
    )
    assert await db.fetchval("SELECT count(*) FROM product_fanout") == 0
    assert (await customer_row(db, shop.shop_id))["next_eval_at"] != NOW
    catalog = await db.fetchrow("SELECT product_type, title FROM products")
    assert tuple(catalog) == ("Apparel", "Better tee")


async def test_time_alone_moves_a_customer_into_churn_risk(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    churn = await add_segment(db, shop.shop_id, "churn-risk", CHURN_RISK)
    await run(db, shop.shop_id, shopify_event("orders/create", order(1, "5.00", placed=at(89))))
    row = await customer_row(db, shop.shop_id)
    flips_at = at(89) + timedelta(days=91)
    assert NOW < row["next_eval_at"] <= flips_at
    assert await evaluate_due(pool, RuleBook(), NOW) == 0
    # Just before the rule flips nothing changes; at the flip the customer enters.
    almost = flips_at - timedelta(microseconds=1)
    while (await customer_row(db, shop.shop_id))["next_eval_at"] <= almost:
        assert await evaluate_due(pool, RuleBook(), almost) == 1
    assert await db.fetchval("SELECT count(*) FROM memberships WHERE segment_id = $1", churn) == 0
    assert (await customer_row(db, shop.shop_id))["next_eval_at"] == flips_at
    assert await evaluate_due(pool, RuleBook(), flips_at) == 1
    members = await db.fetch("SELECT * FROM memberships WHERE segment_id = $1", churn)
    assert [m["customer_id"] for m in members] == [CUSTOMER]
    change = await db.fetchrow("SELECT * FROM segment_changes WHERE segment_id = $1", churn)
    assert (change["change"], change["cause"]) == ("entered", "schedule")


async def test_time_alone_moves_a_new_customer_out_after_30_days(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    rule = {"all": [{"name": "days_since_registration", "operator": "less_than", "value": 30}]}
    new = await add_segment(db, shop.shop_id, "new-customer", rule)
    registered = at(10)
    customer = {
        "id": CUSTOMER,
        "created_at": registered.isoformat(),
        "updated_at": at(10).isoformat(),
    }
    outcome = await run(db, shop.shop_id, shopify_event("customers/create", customer))
    assert [(c.segment_id, c.change) for c in outcome.changes] == [(new, "entered")]
    row = await customer_row(db, shop.shop_id)
    assert row["next_eval_at"] == registered + timedelta(days=30)
    assert await evaluate_due(pool, RuleBook(), row["next_eval_at"]) == 1
    assert await db.fetchval("SELECT count(*) FROM memberships WHERE segment_id = $1", new) == 0
    exits = await db.fetch("SELECT change, cause FROM segment_changes WHERE change = 'exited'")
    assert [tuple(r) for r in exits] == [("exited", "schedule")]
    assert (await customer_row(db, shop.shop_id))["next_eval_at"] is None


async def test_events_that_change_no_state_create_no_customer(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    flow = Event("flow/vip_candidate", "f1", NOW, NOW, CUSTOMER, {"event": "vip_candidate"})
    unknown = Event("inventory_levels/update", "u1", NOW, NOW, CUSTOMER, None)
    redact = shopify_event(
        "customers/redact",
        {"shop_id": 1, "customer": {"id": CUSTOMER}, "orders_to_redact": []},
        event_id="x",
    )
    outcome = await run(db, shop.shop_id, flow, unknown, redact)
    assert len(outcome.applied) == 3
    assert await customer_row(db, shop.shop_id) is None
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 3


async def order_row(db: asyncpg.Connection, order_id: int) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)


async def test_an_order_and_its_refund_in_one_batch_either_way_round(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    placed = shopify_event("orders/create", order(1, "1500.00", placed=at(2)), event_id="o")
    refunded = shopify_event("refunds/create", refund(5, 1, "600.00", when=at(1)), event_id="r")
    for n, batch in enumerate(([placed, refunded], [refunded, placed])):
        await db.execute("DELETE FROM processed_events")
        await db.execute("DELETE FROM orders")
        await db.execute("DELETE FROM customers")
        await run(db, shop.shop_id, *batch)
        row = await customer_row(db, shop.shop_id)
        assert (row["orders_count"], row["total_spent"], row["refunds_count"]) == (
            1,
            Decimal("900.00"),
            1,
        ), n
        stored = await order_row(db, 1)
        assert stored["customer_id"] == CUSTOMER
        assert stored["facts"] is not None


async def test_an_order_moved_to_another_customer_leaves_the_first(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    vip = await add_segment(db, shop.shop_id, "vip", VIP)
    other = CUSTOMER + 1
    first = order(1, "1500.00", placed=at(2))
    await run(db, shop.shop_id, shopify_event("orders/create", first, event_id="o1"))
    moved = order(1, "1500.00", placed=at(2), updated=at(1), customer=other)
    outcome = await run(db, shop.shop_id, shopify_event("orders/updated", moved, event_id="o2"))
    rows = {
        r["customer_id"]: (r["orders_count"], r["total_spent"])
        for r in await db.fetch("SELECT * FROM customers")
    }
    assert rows == {CUSTOMER: (0, Decimal(0)), other: (1, Decimal("1500.00"))}
    assert sorted((c.customer_id, c.change) for c in outcome.changes) == [
        (CUSTOMER, "exited"),
        (other, "entered"),
    ]
    members = await db.fetch("SELECT customer_id FROM memberships WHERE segment_id = $1", vip)
    assert [m["customer_id"] for m in members] == [other]


async def test_an_older_guest_delivery_does_not_detach_the_order(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    newer = order(1, "80.00", placed=at(3), updated=at(1))
    older_guest = order(1, "70.00", placed=at(3), updated=at(3), customer=None)
    await run(
        db,
        shop.shop_id,
        shopify_event("orders/updated", newer, event_id="o1"),
        shopify_event("orders/create", older_guest, event_id="o2"),
    )
    row = await customer_row(db, shop.shop_id)
    assert (row["orders_count"], row["total_spent"]) == (1, Decimal("80.00"))
    assert (await order_row(db, 1))["customer_id"] == CUSTOMER
