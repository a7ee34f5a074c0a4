"""Segmenter throughput and backfill time, against a real PostgreSQL.

    .venv/bin/python -m bench.segmenter [--events 20000] [--customers 5000] [--batch 500]
        [--backfill 100000]

Uses DATABASE_URL if set, else starts an embedded PostgreSQL in a temporary directory.
Events go through the production batch path (dedupe, reducer, every built-in segment
evaluated with the compiled rules, state + memberships + outbox written) one transaction per
batch; Kafka is not involved, so this is the segmenter's own cost per event.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.common.db import migrate
from services.common.shopify import parse_payload
from services.common.shops import create_shop
from services.dev.embedded import EmbeddedPostgres
from services.segmenter.domain.reducer import Event
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.segments import SegmentSpec, create_segment, install_templates

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def order_event(n: int, customers: int, rng: random.Random) -> Event:
    customer = 1_000_000 + rng.randrange(customers)
    placed = NOW - timedelta(days=rng.randrange(400), minutes=rng.randrange(1440))
    total = f"{rng.randrange(5, 2000)}.{rng.randrange(100):02d}"
    payload: dict[str, Any] = {
        "id": 5_000_000 + n,
        "created_at": placed.isoformat(),
        "updated_at": placed.isoformat(),
        "total_price": total,
        "customer": {"id": customer, "email": f"c{customer}@example.com"},
        "line_items": [
            {"id": n, "product_id": 100 + rng.randrange(50), "vendor": "Acme", "quantity": 1}
        ],
    }
    return Event(
        "orders/create",
        f"bench-{n}",
        placed,
        NOW,
        customer,
        parse_payload("orders/create", payload),
    )


async def measure_events(
    dsn: str, shop_id: int, events: int, customers: int, batch: int
) -> dict[str, float]:
    rng = random.Random(7)
    stream = [order_event(n, customers, rng) for n in range(events)]
    rules = RuleBook()
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        for start in range(0, events, batch):
            chunk = [ShopEvent(shop_id, e) for e in stream[start : start + batch]]
            async with conn.transaction():
                await apply_events(conn, chunk, rules, NOW)
        elapsed = time.perf_counter() - started
        segments = await conn.fetchval("SELECT count(*) FROM segments WHERE shop_id = $1", shop_id)
    finally:
        await conn.close()
    return {
        "events": events,
        "customers": customers,
        "segments": segments,
        "batch": batch,
        "seconds": round(elapsed, 2),
        "events_per_second": round(events / elapsed, 1),
    }


async def measure_backfill(dsn: str, shop_id: int, count: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO customers (shop_id, customer_id, orders_count, total_spent, last_order_at,
                registered_at)
            SELECT $1, g, g % 7, (g % 3000) + 0.5, $2::timestamptz - (g % 400) * interval '1 day',
                $2::timestamptz - (g % 900) * interval '1 day'
            FROM generate_series(1, $3) AS g
            """,
            shop_id,
            NOW,
            count,
        )
        rule = {
            "all": [
                {"name": "total_spent", "operator": "greater_than", "value": 1000},
                {"name": "days_since_last_order", "operator": "less_than", "value": 90},
            ]
        }
        started = time.perf_counter()
        async with conn.transaction():
            created = await create_segment(
                conn, shop_id, SegmentSpec("bench-vip", "Bench", "", rule, []), NOW
            )
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    assert created is not None
    return {"customers": count, "entered": created[1].entered, "seconds": round(elapsed, 2)}


async def main(args: argparse.Namespace) -> None:
    postgres = None
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        postgres = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="segflow-bench-")) / "pg")
        dsn = postgres.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            shop = await create_shop(conn, f"bench-{int(time.time())}.myshopify.com")
            await install_templates(conn, shop.shop_id, NOW)
            other = await create_shop(conn, f"bench-backfill-{int(time.time())}.myshopify.com")
        finally:
            await conn.close()
        result = {
            "segmenter": await measure_events(
                dsn, shop.shop_id, args.events, args.customers, args.batch
            ),
            "backfill": await measure_backfill(dsn, other.shop_id, args.backfill),
        }
        sys.stdout.write(json.dumps(result) + "\n")
    finally:
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backfill", type=int, default=100_000)
    asyncio.run(main(parser.parse_args()))
