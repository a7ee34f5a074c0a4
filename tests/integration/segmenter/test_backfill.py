"""Backfilling a new segment over 100k stored customers in one SQL pass, checked in Python."""

from datetime import UTC, datetime

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.storage.rows import facts_from_row
from services.segmenter.storage.segments import SegmentSpec, create_segment

NOW = datetime(2026, 6, 1, tzinfo=UTC)
COUNT = 100_000

FILL = """
INSERT INTO customers (shop_id, customer_id, orders_count, total_spent, average_order_value,
    last_order_at, registered_at, country_code, tags, product_type_counts)
SELECT $1, g, g % 7, (g % 3000) + 0.5,
    CASE WHEN g % 7 = 0 THEN NULL ELSE ((g % 3000) + 0.5) / (g % 7) END,
    CASE WHEN g % 7 = 0 THEN NULL ELSE $2::timestamptz - (g % 400) * interval '1 day' END,
    $2::timestamptz - (g % 900) * interval '1 day' - (g % 13) * interval '1 hour',
    (ARRAY['US', 'CN', 'DE', NULL])[1 + g % 4],
    CASE WHEN g % 5 = 0 THEN ARRAY['Wholesale'] ELSE ARRAY[]::text[] END,
    CASE WHEN g % 3 = 0 THEN '{"Apparel": 2}'::jsonb ELSE '{}'::jsonb END
FROM generate_series(1, $3) AS g
"""

RULE = {
    "any": [
        {
            "all": [
                {"name": "total_spent", "operator": "greater_than", "value": 1000},
                {"name": "days_since_last_order", "operator": "less_than_or_equal_to", "value": 90},
            ]
        },
        {
            "all": [
                {"name": "tags", "operator": "contains", "value": "wholesale"},
                {"name": "country_code", "operator": "not_equal_to", "value": "US"},
                {
                    "name": "product_type_order_counts",
                    "operator": "count_at_least",
                    "value": {"key": "apparel", "count": 2},
                },
            ]
        },
        {"name": "days_since_registration", "operator": "less_than", "value": 30},
    ]
}


async def test_backfill_of_100k_customers_matches_the_compiled_rule(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    await db.execute(FILL, shop.shop_id, NOW, COUNT)
    async with db.transaction():
        created = await create_segment(
            db, shop.shop_id, SegmentSpec("mixed", "Mixed", "", RULE, []), NOW
        )
    assert created is not None
    segment_id, result = created

    members = {
        r["customer_id"]
        for r in await db.fetch(
            "SELECT customer_id FROM memberships WHERE segment_id = $1", segment_id
        )
    }
    matches = compile_conditions(RULE)
    expected = {
        row["customer_id"]
        for row in await db.fetch("SELECT * FROM customers WHERE shop_id = $1", shop.shop_id)
        if matches(facts_from_row(row), NOW)
    }
    assert 0 < len(expected) < COUNT
    assert members == expected
    assert result.entered == len(expected)
    assert await db.fetchval(
        "SELECT count(*) FROM segment_changes WHERE segment_id = $1 AND change = 'entered'",
        segment_id,
    ) == len(expected)
    # The rule reads time, so every customer is due for a scheduled re-evaluation.
    assert (
        await db.fetchval("SELECT count(*) FROM customers WHERE next_eval_at <= $1", NOW) == COUNT
    )
