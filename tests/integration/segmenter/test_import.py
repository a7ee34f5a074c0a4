"""`segflow import` against a real PostgreSQL: state, re-runs, rejections, a 20,000-order file."""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.import_orders import write_orders
from services.common.shops import ShopCredentials
from services.segmenter.importer.runner import (
    ImportReport,
    Progress,
    UnknownShopError,
    UnreadableFileError,
    import_files,
)
from services.segmenter.storage.segments import SegmentSpec, create_segment

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "import"
# Orders before customers before products: files come in any order.
FILES = [
    FIXTURES / "orders_bulk.jsonl",
    FIXTURES / "customers_export.csv",
    FIXTURES / "customers_bulk.jsonl",
    FIXTURES / "shop_rest.jsonl",
    FIXTURES / "products_bulk.jsonl",
]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ADA, CARL, ERIN, DEE = 7985351721238, 7985351721239, 7985351721241, 115310627314723954
BOB = 820982911946154508
VIP = SegmentSpec(
    handle="vip",
    name="VIP",
    description="Spent more than 1000.",
    conditions={"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]},
    actions=[],
)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield created
    await created.close()


async def run_import(
    pool: asyncpg.Pool, shop: ShopCredentials, files: list[Path], **options: Any
) -> ImportReport:
    return await import_files(pool, shop.domain, files, now=NOW, **options)


async def customers(db: asyncpg.Connection, shop_id: int) -> dict[int, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM customers WHERE shop_id = $1", shop_id)
    return {row["customer_id"]: row for row in rows}


async def test_import_builds_customers_through_the_live_pipeline(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    async with db.transaction():
        created = await create_segment(db, shop.shop_id, VIP, NOW)
    assert created is not None
    seen: list[Progress] = []

    report = await run_import(pool, shop, FILES, batch_size=3, progress=seen.append)

    # 12 + 6 + 4 + 4 + 5 lines and CSV rows; 14 objects applied, 7 rows rejected.
    assert report.rows_read == 31
    assert (report.events_applied, report.duplicates, report.rejected_count) == (14, 0, 7)
    assert [(Path(r.file).name, r.line) for r in report.rejected] == [
        ("orders_bulk.jsonl", 11),
        ("orders_bulk.jsonl", 12),
        ("customers_export.csv", 5),
        ("customers_export.csv", 6),
        ("customers_export.csv", 7),
        ("customers_export.csv", 8),
        ("shop_rest.jsonl", 4),
    ]
    assert report.rejected[2].reason.startswith("no Customer ID")
    assert len(seen) > 5 and seen[-1].rows_read == 31 and seen[-1].events_applied == 14

    found = await customers(db, shop.shop_id)
    assert set(found) == {ADA, CARL, BOB, ERIN, DEE}
    ada = found[ADA]
    # The CSV's Total Orders / Total Spent are a floor under the one order in the file.
    assert (ada["orders_count"], ada["total_spent"]) == (4, Decimal("1250.10"))
    assert ada["cancelled_orders_count"] == 1
    # Products were imported last; the order's lines still resolved to their types.
    assert json.loads(ada["product_type_counts"]) == {"Apparel": 1, "Shoes": 1}
    assert json.loads(ada["vendor_counts"]) == {"Acme": 1, "Stride": 1}
    assert (ada["city"], ada["country_code"], ada["accepts_email_marketing"]) == (
        "Louisville",
        "US",
        True,
    )
    assert sorted(ada["tags"]) == ["VIP", "newsletter"]
    bob = found[BOB]
    assert (bob["orders_count"], bob["total_spent"], bob["refunded_total"]) == (
        1,
        Decimal("89.50"),
        Decimal("10.00"),
    )
    assert json.loads(bob["product_type_counts"]) == {"Apparel": 1}
    assert bob["registered_at"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    erin = found[ERIN]
    assert (erin["orders_count"], erin["total_spent"], erin["email"]) == (
        1,
        Decimal("42.00"),
        "erin@example.com",
    )
    assert json.loads(erin["product_type_counts"]) == {"Shoes": 1}
    assert json.loads(found[DEE]["product_type_counts"]) == {"Accessories": 1}
    assert found[DEE]["country_code"] == "DE"
    assert (found[CARL]["orders_count"], found[CARL]["total_spent"]) == (0, Decimal(0))

    loose = await db.fetchval(
        "SELECT customer_id IS NULL FROM orders WHERE shop_id = $1 AND order_id = $2",
        shop.shop_id,
        5960000000000000004,
    )
    assert loose is True
    members = await db.fetch("SELECT customer_id FROM memberships WHERE shop_id = $1", shop.shop_id)
    assert [row["customer_id"] for row in members] == [ADA]
    changes = await db.fetch(
        "SELECT customer_id, change, cause, cause_event_id FROM segment_changes WHERE shop_id = $1",
        shop.shop_id,
    )
    assert [(c["customer_id"], c["change"], c["cause"]) for c in changes] == [
        (ADA, "entered", "import")
    ]
    assert changes[0]["cause_event_id"].startswith("import:")


async def test_a_second_run_is_all_duplicates_and_changes_nothing(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    first = await run_import(pool, shop, FILES)
    before = await customers(db, shop.shop_id)
    orders_before = await db.fetch("SELECT * FROM orders ORDER BY order_id")
    changes_before = await db.fetchval("SELECT count(*) FROM segment_changes")

    second = await run_import(pool, shop, FILES)

    assert second.rows_read == first.rows_read == 31
    assert (second.events_applied, second.duplicates) == (0, first.events_applied)
    assert second.rejected_count == first.rejected_count == 7
    assert await customers(db, shop.shop_id) == before
    assert await db.fetch("SELECT * FROM orders ORDER BY order_id") == orders_before
    assert await db.fetchval("SELECT count(*) FROM segment_changes") == changes_before


async def test_an_unknown_shop_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(UnknownShopError, match="nobody.myshopify.com"):
        await import_files(pool, "nobody.myshopify.com", FILES, now=NOW)


async def test_a_file_that_is_not_utf8_stops_the_import_with_its_name(
    pool: asyncpg.Pool, shop: ShopCredentials, tmp_path: Path
) -> None:
    latin1 = tmp_path / "customers_export.csv"
    latin1.write_bytes("Customer ID,Email\n'1,m\u00fcller@example.com\n".encode("latin-1"))
    with pytest.raises(UnreadableFileError, match="customers_export.csv"):
        await run_import(pool, shop, [latin1])


async def test_twenty_thousand_generated_orders(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials, tmp_path: Path
) -> None:
    generated = write_orders(tmp_path / "orders.jsonl", orders=20_000, customers=1_000)

    report = await run_import(pool, shop, [tmp_path / "orders.jsonl"])

    assert report.rejected_count == 0
    assert report.rows_read == generated.products + generated.orders + generated.lines
    assert report.events_applied == generated.products + generated.orders
    totals = await db.fetchrow(
        """SELECT count(*) AS customers, sum(orders_count) AS orders, sum(total_spent) AS spent,
                  sum(cancelled_orders_count) AS cancelled
           FROM customers WHERE shop_id = $1""",
        shop.shop_id,
    )
    assert totals["customers"] == generated.customers
    assert totals["orders"] == generated.counted_orders
    assert totals["spent"] == generated.counted_total
    assert totals["cancelled"] == generated.orders - generated.counted_orders
    assert await db.fetchval("SELECT count(*) FROM orders") == generated.orders
    typed = await db.fetchval(
        """SELECT sum(value::int) FROM customers, jsonb_each_text(product_type_counts)
           WHERE shop_id = $1""",
        shop.shop_id,
    )
    # Each counted order has one or two lines; every product has a type.
    assert generated.counted_orders <= typed <= 2 * generated.counted_orders


async def run_cli(database_url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "import",
        *args,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_cli_exit_status_and_output(database_url: str, shop: ShopCredentials) -> None:
    clean = [str(FIXTURES / "products_bulk.jsonl"), str(FIXTURES / "customers_bulk.jsonl")]
    status, output = await run_cli(database_url, "--shop", shop.domain, *clean)
    assert status == 0, output
    assert "products_bulk.jsonl: 5 rows read so far, 2 applied" in output
    assert "9 rows read, 5 events applied, 0 duplicates (already imported), 0 rejected" in output

    status, output = await run_cli(
        database_url, "--shop", shop.domain, str(FIXTURES / "customers_export.csv")
    )
    assert status == 1, output
    assert "customers_export.csv:6: Customer ID '12ab' is not a Shopify id" in output

    status, output = await run_cli(database_url, "--shop", "nobody.myshopify.com", clean[0])
    assert status == 2 and "no shop nobody.myshopify.com is registered" in output
    status, output = await run_cli(database_url, "--shop", shop.domain, "missing.jsonl")
    assert status == 2 and "no such file: missing.jsonl" in output
