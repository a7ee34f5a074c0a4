"""facts_to_row writes every CustomerFacts field to its customers column and reads back equal."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.storage.rows import FACT_COLUMNS, facts_to_row


async def test_facts_round_trip_through_the_customers_table(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    at = datetime(2026, 3, 15, 12, 0, 0, 123_456, tzinfo=UTC)
    facts = CustomerFacts(
        shop_id=shop.shop_id,
        customer_id=820982911946154508,
        registered_at=at,
        email="jon@example.com",
        accepts_email_marketing=True,
        country_code="US",
        birthday_month=12,
        tags=("VIP", "a, b"),
        orders_count=3,
        total_spent=Decimal("1200.50"),
        average_order_value=Decimal("400.166666666667"),
        last_order_at=at,
        spent_30d=Decimal("0.01"),
        product_type_counts={"Apparel": 2, 'Ümlaut "q"': 1},
        product_counts={"820982911946154508": 1},
        rfm_recency=5,
        rfm_segment="champions",
        lifecycle_stage="loyal",
    )
    row = facts_to_row(facts)
    assert set(row) == set(FACT_COLUMNS)
    columns = ", ".join(FACT_COLUMNS)
    placeholders = ", ".join(f"${i}" for i in range(1, len(FACT_COLUMNS) + 1))
    await db.execute(
        f"INSERT INTO customers ({columns}) VALUES ({placeholders})",
        *(row[c] for c in FACT_COLUMNS),
    )
    stored = await db.fetchrow(f"SELECT {columns} FROM customers")
    values = dict(stored)
    for column in ("product_type_counts", "vendor_counts", "product_counts"):
        values[column] = json.loads(values[column])
    values["tags"] = tuple(values["tags"])
    assert CustomerFacts(**values) == facts
