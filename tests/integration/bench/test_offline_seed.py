"""The benchmark's stored history, made in SQL: the store's skew, evaluated as production does."""

import random
from datetime import UTC, datetime

import asyncpg

from bench import offline, store
from services.segmenter.storage.segments import install_templates

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CUSTOMERS = 3_000


async def test_generated_history_has_the_stores_skew_and_is_evaluated(
    database_url: str, db: asyncpg.Connection, shop: object
) -> None:
    shop_id = await db.fetchval("SELECT id FROM shops ORDER BY id LIMIT 1")
    await install_templates(db, shop_id, NOW)
    first = await offline.seed(database_url, shop_id, range(0, 1_000), NOW, with_products=True)
    # A second call adds the next customers without touching the first ones.
    second = await offline.seed(
        database_url, shop_id, range(1_000, CUSTOMERS), NOW, with_products=False
    )

    assert (first.customers, second.customers) == (1_000, CUSTOMERS - 1_000)
    counts = [
        r["n"]
        for r in await db.fetch(
            "SELECT count(*) AS n FROM orders WHERE shop_id = $1 GROUP BY customer_id", shop_id
        )
    ]
    assert len(counts) == CUSTOMERS and sum(counts) == first.orders + second.orders
    rng = random.Random(5)
    model = [store.order_count(rng) for _ in range(CUSTOMERS)]
    share_once = sum(c == 1 for c in counts) / CUSTOMERS
    assert abs(share_once - sum(c == 1 for c in model) / CUSTOMERS) < 0.05
    assert max(counts) <= store.MAX_ORDERS and max(counts) > 10

    rows = await db.fetch(
        "SELECT customer_id, orders_count, total_spent, evaluated_at FROM customers"
        " WHERE shop_id = $1",
        shop_id,
    )
    assert len(rows) == CUSTOMERS
    assert {r["customer_id"] - store.CUSTOMER_BASE for r in rows} == set(range(CUSTOMERS))
    # Every customer was evaluated from their orders (facts derived, not the defaults).
    assert all(r["evaluated_at"] is not None for r in rows)
    assert sum(r["orders_count"] > 0 for r in rows) > CUSTOMERS * 0.9
    assert all(r["total_spent"] >= 0 for r in rows)
    members = await db.fetchval(
        "SELECT count(DISTINCT customer_id) FROM memberships WHERE shop_id = $1", shop_id
    )
    assert members > 0
    typed = await db.fetchval(
        "SELECT count(*) FROM products WHERE shop_id = $1 AND product_type IS NOT NULL", shop_id
    )
    assert typed == store.PRODUCTS
