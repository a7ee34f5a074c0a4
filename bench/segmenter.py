"""Segmenter throughput and backfill time, against a real PostgreSQL.

    .venv/bin/python -m bench.segmenter [--events 20000] [--customers 5000] [--batch 500]
        [--backfill 100000] [--history 0] [--history-orders 3]

With --history N, N customers (the ids the events go to) are stored first with
--history-orders orders each (in SQL, their aggregates built from those orders where the tree
keeps them), so the events meet customers that already have orders: the cost curve.

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


async def store_history(dsn: str, shop_id: int, customers: int, orders: int) -> dict[str, float]:
    """Store `customers` customers with `orders` orders each, then evaluate them all once."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.execute(
            """
            INSERT INTO customers (shop_id, customer_id)
            SELECT $1, 1000000 + g FROM generate_series(0, $2::int - 1) AS g
            """,
            shop_id,
            customers,
        )
        await conn.execute(
            """
            INSERT INTO orders (shop_id, order_id, customer_id, facts, product_ids)
            SELECT $1, 90000000 + g, 1000000 + g / $4::int, jsonb_build_object(
                'placed_at', to_jsonb($2::timestamptz - (g % 400) * interval '1 day'),
                'total', ((g % 1990) + 5)::text || '.25', 'cancelled', false, 'test', false,
                'updated_at', to_jsonb($2::timestamptz - (g % 400) * interval '1 day'),
                'checkout_token', null, 'lines', jsonb_build_array(jsonb_build_array(
                    100 + g % 50, 'Acme', 1)), 'rate', null, 'currency', null),
                ARRAY[100 + g % 50]::bigint[]
            FROM generate_series(0, $3::int * $4::int - 1) AS g
            """,
            shop_id,
            NOW,
            customers,
            orders,
        )
        stored = time.perf_counter() - started
        await build_aggregates(conn, shop_id, customers)
        # Both trees start from tables without the dead rows building the aggregates leaves.
        await conn.execute("VACUUM ANALYZE customers, orders")
    finally:
        await conn.close()
    return {
        "customers": customers,
        "orders": customers * orders,
        "store_seconds": round(stored, 1),
        "aggregate_seconds": round(time.perf_counter() - started - stored, 1),
    }


SAVE_AGGREGATES = """
UPDATE customers c SET aggregates = u.aggregates::jsonb
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u (shop_id, customer_id, aggregates)
WHERE c.shop_id = u.shop_id AND c.customer_id = u.customer_id
"""


async def build_aggregates(conn: asyncpg.Connection, shop_id: int, customers: int) -> None:
    """Build the stored customers' aggregates as the upgrade does (from their orders), so the
    events meet them built; a tree from before aggregates has nothing to build."""
    try:
        from services.segmenter.domain.aggregates import basis_of, build, contribution
        from services.segmenter.storage import queries
        from services.segmenter.storage.rows import aggregates_to_json
    except ImportError:
        return
    catalog: dict[int, Any] = {}
    for start in range(0, customers, 5000):
        keys = [(shop_id, 1_000_000 + g) for g in range(start, min(start + 5000, customers))]
        locked = await queries.lock_states(conn, keys)
        stored = await queries.orders_of_customers(conn, keys)
        parts: list[tuple[int, int, Any]] = []
        built: list[tuple[tuple[int, int], str]] = []
        for key, customer in locked.items():
            basis = basis_of(customer.state)
            mine = {i: contribution(o, basis, catalog) for i, o in stored.get(key, {}).items()}
            parts.extend((shop_id, i, part) for i, part in mine.items())
            built.append((key, aggregates_to_json(build(mine, basis, NOW))))
        await queries.save_contributions(conn, parts)
        await conn.execute(
            SAVE_AGGREGATES,
            [k[0] for k, _ in built],
            [k[1] for k, _ in built],
            [a for _, a in built],
        )


async def measure_events(
    dsn: str, shop_id: int, events: int, customers: int, batch: int
) -> dict[str, float]:
    rng = random.Random(7)
    stream = [order_event(n, customers, rng) for n in range(events)]
    rules = RuleBook()
    conn = await asyncpg.connect(dsn)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        cpu_before = time.process_time() + backend_cpu(backend)
        started = time.perf_counter()
        for start in range(0, events, batch):
            chunk = [ShopEvent(shop_id, e) for e in stream[start : start + batch]]
            async with conn.transaction():
                await apply_events(conn, chunk, rules, NOW)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() + backend_cpu(backend) - cpu_before
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
        # CPU of this process and its PostgreSQL backend: on shared cores, less noisy than
        # wall time (the backend's CPU reads 0 when PostgreSQL is not on this machine).
        "cpu_ms_per_event": round(cpu * 1000 / events, 3),
    }


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a local process has used; 0 if it is not visible here."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        result: dict[str, Any] = {}
        if args.history:
            result["history"] = await store_history(
                dsn, shop.shop_id, args.history, args.history_orders
            )
        result |= {
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
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--history-orders", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
