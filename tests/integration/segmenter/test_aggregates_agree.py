"""Through the real pipeline and PostgreSQL: after random histories, each customer's stored
aggregates, facts and memberships equal a recompute from its stored orders."""

from dataclasses import replace
from datetime import datetime, timedelta
from itertools import count

import asyncpg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.common.shops import ShopCredentials, create_shop
from services.segmenter.domain.derive import derive_facts, facts_from
from services.segmenter.runtime.pipeline import ShopEvent, apply_events, evaluate_customers
from services.segmenter.runtime.segment_cache import RuleBook, evaluate
from services.segmenter.storage import queries
from services.segmenter.storage.rows import aggregates_from_json, facts_from_row, state_from_row
from services.segmenter.storage.segments import install_templates
from tests.unit.segmenter.histories import CATALOG, Batch, histories

SHOPS = count(1)


async def assert_agree(db: asyncpg.Connection, shop_id: int, rules: RuleBook) -> None:
    segments = (await rules.segments_of(db, [shop_id]))[shop_id]
    rows = await db.fetch("SELECT * FROM customers WHERE shop_id = $1", shop_id)
    orders = await queries.orders_of_customers(db, [(shop_id, r["customer_id"]) for r in rows])
    members = await queries.memberships_of(db, [(shop_id, r["customer_id"]) for r in rows])
    for row in rows:
        key = (shop_id, row["customer_id"])
        state = state_from_row(row, {})
        at = row["evaluated_at"]
        recomputed, until = derive_facts(replace(state, orders=orders.get(key, {})), CATALOG, at)
        kept = aggregates_from_json(row["aggregates"])
        assert kept is not None, key
        assert facts_from(state, kept, at) == (recomputed, until), key
        assert facts_from_row(row) == recomputed, key
        expected = evaluate(segments, recomputed, at).segment_ids
        assert members.get(key, set()) == expected, key


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(batches=histories(), later=st.sampled_from([timedelta(days=1), timedelta(days=400)]))
async def test_stored_aggregates_equal_a_recompute_from_the_stored_orders(
    db: asyncpg.Connection, shop: ShopCredentials, batches: list[Batch], later: timedelta
) -> None:
    own = await create_shop(db, f"aggregates-{next(SHOPS)}-{shop.shop_id}.myshopify.com")
    shop_id = own.shop_id
    await install_templates(db, shop_id, batches[0].now)
    await queries.save_products(db, [(shop_id, product) for product in CATALOG.values()])
    rules = RuleBook()
    for batch in batches:
        async with db.transaction():
            await apply_events(db, [ShopEvent(shop_id, e) for e in batch.events], rules, batch.now)
    await assert_agree(db, shop_id, rules)
    # The scheduler's path: time passes, windows age out, due customers are re-evaluated.
    await evaluate_due_at(db, rules, batches[-1].now + later)
    await assert_agree(db, shop_id, rules)
    # An upgrade: rows from before migration 0004 (no aggregates, no contributions), made due
    # as the migration makes them, are built from their stored orders with the same facts.
    facts = await stored_facts(db, shop_id)
    upgraded = batches[-1].now + later
    await db.execute(
        "UPDATE customers SET aggregates = NULL, next_eval_at = $2 WHERE shop_id = $1",
        shop_id,
        upgraded,
    )
    await db.execute("UPDATE orders SET contribution = NULL WHERE shop_id = $1", shop_id)
    await evaluate_due_at(db, rules, upgraded)
    await assert_agree(db, shop_id, rules)
    assert await stored_facts(db, shop_id) == facts


async def stored_facts(db: asyncpg.Connection, shop_id: int) -> dict[int, object]:
    rows = await db.fetch("SELECT * FROM customers WHERE shop_id = $1", shop_id)
    return {row["customer_id"]: facts_from_row(row) for row in rows}


async def evaluate_due_at(db: asyncpg.Connection, rules: RuleBook, now: datetime) -> None:
    """What scheduler.evaluate_due does, on this test's connection."""
    async with db.transaction():
        keys = await queries.due_customers(db, now, 1000)
        await evaluate_customers(db, await queries.lock_states(db, keys), rules, now, "schedule")
