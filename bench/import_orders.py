"""Import throughput: a generated bulk-operation JSONL of N orders over M customers, imported.

The file has the shape an Admin GraphQL bulk query writes (products, then each order followed by
its line items as `__parentId` lines). Against DATABASE_URL, or an embedded PostgreSQL:
    .venv/bin/python -m bench.import_orders --orders 1000000 --customers 100000 --embedded
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from services.common.db import create_pool, migrate
from services.common.shops import ShopExistsError, create_shop
from services.segmenter.importer.runner import ImportReport, Progress, import_files

ORDER_BASE = 5_000_000_000_000
CUSTOMER_BASE = 7_000_000_000_000
PRODUCT_BASE = 8_000_000_000_000
LINE_BASE = 13_000_000_000_000
PRODUCT_TYPES = ("Apparel", "Shoes", "Accessories", "Home", "Beauty")
# Every CANCEL_EVERY-th order is cancelled, so it counts for nothing.
CANCEL_EVERY = 50
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Generated:
    """What a generated file holds, to check an import against."""

    orders: int
    customers: int
    products: int
    lines: int
    counted_orders: int
    counted_total: Decimal


def _gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def _money(amount: Decimal) -> dict[str, Any]:
    return {"shopMoney": {"amount": str(amount), "currencyCode": "USD"}}


def order_lines(n: int, customers: int, products: int) -> list[dict[str, Any]]:
    """Order n and its line items as bulk-operation objects (deterministic in n)."""
    placed = START - timedelta(minutes=(n * 7919) % (730 * 24 * 60))
    total = Decimal(10 + n % 190) + Decimal("0.99")
    cancelled = placed + timedelta(hours=1) if n % CANCEL_EVERY == 0 else None
    order: dict[str, Any] = {
        "id": _gid("Order", ORDER_BASE + n),
        "name": f"#{1000 + n}",
        "createdAt": placed.isoformat(),
        "updatedAt": (placed + timedelta(minutes=5)).isoformat(),
        "processedAt": placed.isoformat(),
        "cancelledAt": cancelled.isoformat() if cancelled else None,
        "test": False,
        "totalPriceSet": _money(total),
        "customer": {"id": _gid("Customer", CUSTOMER_BASE + n % customers)},
    }
    lines = [order]
    for i in range(1 + n % 2):
        product = (n + i * 7) % products
        lines.append(
            {
                "id": _gid("LineItem", LINE_BASE + 2 * n + i),
                "quantity": 1 + i,
                "vendor": f"Vendor {product % 7}",
                "product": {"id": _gid("Product", PRODUCT_BASE + product)},
                "__parentId": order["id"],
            }
        )
    return lines


def write_orders(path: Path, orders: int, customers: int, products: int = 50) -> Generated:
    """Write the JSONL file: the products, then every order followed by its line items."""
    counted_orders, counted_total, line_count = 0, Decimal(0), 0
    with path.open("w", encoding="utf-8") as out:
        for p in range(products):
            product = {
                "id": _gid("Product", PRODUCT_BASE + p),
                "title": f"Product {p}",
                "vendor": f"Vendor {p % 7}",
                "productType": PRODUCT_TYPES[p % len(PRODUCT_TYPES)],
                "updatedAt": "2026-01-01T00:00:00Z",
            }
            out.write(json.dumps(product, separators=(",", ":")) + "\n")
        for n in range(orders):
            objects = order_lines(n, customers, products)
            line_count += len(objects) - 1
            if n % CANCEL_EVERY:
                counted_orders += 1
                counted_total += Decimal(objects[0]["totalPriceSet"]["shopMoney"]["amount"])
            out.write("\n".join(json.dumps(o, separators=(",", ":")) for o in objects) + "\n")
    return Generated(orders, customers, products, line_count, counted_orders, counted_total)


async def _ensure_shop(dsn: str, domain: str, embedded: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if embedded:
            await migrate(conn)
        try:
            await create_shop(conn, domain)
        except ShopExistsError:
            pass
    finally:
        await conn.close()


def _report_progress(every: int) -> Any:
    calls = 0

    def report(p: Progress) -> None:
        nonlocal calls
        calls += 1
        if calls % every == 0:
            sys.stdout.write(
                f"{p.rows_read} rows, {p.events_applied} applied, {p.seconds:.0f} s, "
                f"{p.rows_per_second:.0f} rows/s\n"
            )
            sys.stdout.flush()

    return report


async def run(dsn: str, domain: str, path: Path, batch_size: int) -> ImportReport:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        return await import_files(
            pool, domain, [path], batch_size=batch_size, now=START, progress=_report_progress(25)
        )
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--shop", default="bench-import.myshopify.com")
    parser.add_argument("--file", type=Path, help="where to write the JSONL (default: temp dir)")
    parser.add_argument("--embedded", action="store_true", help="use an embedded PostgreSQL")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="segflow-bench-") as tmp:
        path = args.file or Path(tmp) / "orders.jsonl"
        started = time.perf_counter()
        generated = write_orders(path, args.orders, args.customers, args.products)
        sys.stdout.write(
            f"generated {path}: {generated.orders} orders, {generated.lines} line items, "
            f"{path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s\n"
        )
        server = None
        if args.embedded:
            from services.dev.embedded import EmbeddedPostgres

            server = EmbeddedPostgres(Path(tmp) / "pg")
            dsn = server.start()
        else:
            dsn = os.environ.get("DATABASE_URL", "")
            if not dsn:
                parser.error("set DATABASE_URL or pass --embedded")
        try:
            asyncio.run(_ensure_shop(dsn, args.shop, args.embedded))
            report = asyncio.run(run(dsn, args.shop, path, args.batch_size))
        finally:
            if server is not None:
                server.stop()
    result = {
        "orders": generated.orders,
        "customers": generated.customers,
        "rows_read": report.rows_read,
        "events_applied": report.events_applied,
        "duplicates": report.duplicates,
        "rejected": report.rejected_count,
        "seconds": round(report.seconds, 1),
        "rows_per_second": round(report.rows_per_second),
        "orders_per_second": round(report.events_applied / report.seconds) if report.seconds else 0,
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
