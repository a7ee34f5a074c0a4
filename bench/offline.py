"""The in-database measures: seeding stored history, the cost curve, the naive SQL baseline,
the rules engine against the compiled rules, and backfill time.

They run in this process against a PostgreSQL of their own, with the production code paths
(the importer, apply_events, create_segment) but no Kafka, so they measure the segmenter's
own cost.
"""

import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from business_rules.engine import run_all

from bench import store
from services.common.db import create_pool
from services.common.shopify import parse_payload
from services.segmenter.domain.reducer import Event
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.rules.compile_sql import compile_where
from services.segmenter.domain.rules.variables import SegmentActions, SegmentVariables
from services.segmenter.importer.runner import import_files
from services.segmenter.runtime.pipeline import ShopEvent, apply_events, evaluate_customers
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage import queries
from services.segmenter.storage.backfill import BackfillOptions
from services.segmenter.storage.rows import facts_from_row
from services.segmenter.storage.segments import SegmentSpec, create_segment

# Orders the cost curve adds to a stored customer take indices from here on, past any history.
NEW_ORDER_INDEX = 500
BACKFILL_RULE = {
    "all": [
        {"name": "total_spent", "operator": "greater_than", "value": 300},
        {"name": "days_since_last_order", "operator": "less_than", "value": 90},
    ]
}


@dataclass(frozen=True)
class Seeded:
    customers: int
    orders: int
    seconds: float


# Customers evaluated per transaction while seeding (as the upgrade builds aggregates).
SEED_CHUNK = 5_000

# The store's history made in SQL: customer n of the store (bench/store.py's ids) gets
# least(MAX_ORDERS, floor(1 / (1 - u)^ORDER_TAIL_EXPONENT)) orders, u a fixed hash of n in
# [0, 1): the store's skew (about two thirds order once, a Pareto tail), without the importer.
GENERATED_CUSTOMERS = """
INSERT INTO customers (shop_id, customer_id)
SELECT $1, $2::bigint + n FROM generate_series($3::bigint, $4::bigint - 1) AS n
"""
GENERATED_ORDERS = """
INSERT INTO orders (shop_id, order_id, customer_id, facts, product_ids)
SELECT $1, $2::bigint + n * $3::bigint + j, $4::bigint + n, jsonb_build_object(
        'placed_at', to_jsonb(placed), 'updated_at', to_jsonb(placed),
        'total', (9 + (p * 37) % 240 + (n + j) % 3 * 20)::text || '.95',
        'cancelled', (n + 7 * j) % 33 = 0, 'test', false, 'checkout_token', null,
        'lines', jsonb_build_array(jsonb_build_array($5::bigint + p, ($6::text[])[p % 5 + 1], 1)),
        'rate', null, 'currency', null),
    ARRAY[$5::bigint + p]::bigint[]
FROM generate_series($7::bigint, $8::bigint - 1) AS n
CROSS JOIN LATERAL generate_series(0, least($9::int, floor(1 / power(
    1 - ((n * 2654435761) % 4294967296)::float8 / 4294967296, $10::float8))::int) - 1) AS j
CROSS JOIN LATERAL (SELECT (n * 7 + j * 13) % 40 AS p,
    $11::timestamptz - ((n * 7919 + j * 104729) % ($12::bigint * 86400)) * interval '1 second'
        AS placed) AS x
"""


async def seed(
    dsn: str, shop_id: int, numbers: range, now: datetime, with_products: bool
) -> Seeded:
    """Store these customers of the store and their orders (generated in SQL), then build
    their aggregates, facts and memberships through the production evaluation, as the upgrade
    does for customers whose aggregates were never built. The importer is timed on its own
    (bench/import_orders.py): 1M customers through it take over an hour here."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        if with_products:
            await _store_products(dsn, conn, shop_id, now)
        await conn.execute(
            GENERATED_CUSTOMERS, shop_id, store.CUSTOMER_BASE, numbers.start, numbers.stop
        )
        await conn.execute(
            GENERATED_ORDERS,
            shop_id,
            store.ORDER_BASE,
            store.ORDERS_PER_CUSTOMER_SLOT,
            store.CUSTOMER_BASE,
            store.PRODUCT_BASE,
            list(store.VENDORS),
            numbers.start,
            numbers.stop,
            store.MAX_ORDERS,
            store.ORDER_TAIL_EXPONENT,
            now,
            store.HISTORY_DAYS,
        )
        orders = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE shop_id = $1 AND customer_id >= $2"
            " AND customer_id < $3",
            shop_id,
            store.CUSTOMER_BASE + numbers.start,
            store.CUSTOMER_BASE + numbers.stop,
        )
        rules = RuleBook()
        for start in range(numbers.start, numbers.stop, SEED_CHUNK):
            keys = [
                (shop_id, store.CUSTOMER_BASE + n)
                for n in range(start, min(start + SEED_CHUNK, numbers.stop))
            ]
            async with conn.transaction():
                await evaluate_customers(
                    conn, await queries.lock_states(conn, keys), rules, now, "import"
                )
                # As if the outbox had run: a running stack publishes these within moments,
                # so its unpublished-rows indexes stay small; left unpublished they would not.
                await conn.execute(
                    "UPDATE segment_changes SET published_at = $2"
                    " WHERE shop_id = $1 AND published_at IS NULL",
                    shop_id,
                    now,
                )
        await conn.execute("VACUUM ANALYZE customers, orders")
    finally:
        await conn.close()
    return Seeded(len(numbers), orders, time.perf_counter() - started)


async def _store_products(dsn: str, conn: asyncpg.Connection, shop_id: int, now: datetime) -> None:
    """The catalogue through the importer (a products-only bulk file): product types known."""
    domain = await conn.fetchval("SELECT domain FROM shops WHERE id = $1", shop_id)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
            path = Path(tmp) / "products.jsonl"
            path.write_text(
                "".join(line + "\n" for line in store.bulk_lines([], with_products=True))
            )
            report = await import_files(pool, domain, [path], now=now, exported_at=now)
    finally:
        await pool.close()
    if report.rejected_count:
        raise RuntimeError(f"seeding rejected {report.rejected_count} rows")


def new_order_events(
    seed: int,
    stored: int,
    count: int,
    now: datetime,
    taken: dict[int, int],
    first_index: int = NEW_ORDER_INDEX,
) -> list[Event]:
    """`count` new orders, each for a random stored customer; `taken` counts per customer;
    their order indices start at `first_index` (past any stored history)."""
    rng = random.Random(seed + stored)
    events = []
    for _ in range(count):
        number = rng.randrange(stored)
        index = first_index + taken.get(number, 0)
        taken[number] = taken.get(number, 0) + 1
        delivery = store.new_order_delivery(rng, number, index, now)
        payload = parse_payload(delivery.topic, json.loads(delivery.body))
        events.append(
            Event(
                delivery.topic,
                delivery.event_id,
                delivery.triggered_at,
                now,
                delivery.customer_id,
                payload,
            )
        )
    return events


async def segmenter_rate(
    dsn: str, shop_id: int, events: Sequence[Event], now: datetime, batch: int
) -> float:
    """Events/s through the production batch path, one transaction per batch."""
    rules = RuleBook()
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            chunk = [ShopEvent(shop_id, e) for e in events[start : start + batch]]
            async with conn.transaction():
                await apply_events(conn, chunk, rules, now)
        return len(events) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def shop_rules(conn: asyncpg.Connection, shop_id: int) -> list[dict[str, Any]]:
    """The shop's segment rules as stored (JSON conditions)."""
    rows = await conn.fetch(
        "SELECT conditions FROM segments WHERE shop_id = $1 ORDER BY id", shop_id
    )
    return [
        json.loads(r["conditions"]) if isinstance(r["conditions"], str) else r["conditions"]
        for r in rows
    ]


async def naive_rate(
    dsn: str, shop_id: int, events: Sequence[Event], now: datetime, budget_seconds: float
) -> tuple[float, int]:
    """The naive design's evaluation: every segment's SQL re-run for the event's customer.

    Only the evaluation is timed (no state or membership writes), so this is an upper bound
    on what a naive segmenter would do. Returns (events/s, events measured).
    """
    conn = await asyncpg.connect(dsn)
    try:
        queries = []
        for rule in await shop_rules(conn, shop_id):
            where, params = compile_where(rule, now_param=3, first_param=4)
            sql = f"SELECT {where} FROM customers WHERE shop_id = $1 AND customer_id = $2"
            queries.append((sql, params))
        done = 0
        started = time.perf_counter()
        for event in events:
            for sql, params in queries:
                await conn.fetchval(sql, shop_id, event.customer_id, now, *params)
            done += 1
            if time.perf_counter() - started > budget_seconds:
                break
        return done / (time.perf_counter() - started), done
    finally:
        await conn.close()


async def rules_rates(
    dsn: str, shop_id: int, now: datetime, sample: int, budget_seconds: float
) -> dict[str, Any]:
    """Evaluations/s of business-rules' run_all and of the compiled rules, over the same
    stored customers' facts and the shop's segments; and whether they agreed."""
    conn = await asyncpg.connect(dsn)
    try:
        rules = await shop_rules(conn, shop_id)
        rows = await conn.fetch(
            "SELECT * FROM customers WHERE shop_id = $1 ORDER BY customer_id LIMIT $2",
            shop_id,
            sample,
        )
    finally:
        await conn.close()
    facts = [facts_from_row(row) for row in rows]
    compiled = [compile_conditions(rule) for rule in rules]
    engine_rules = [{"conditions": rule, "actions": []} for rule in rules]
    actions = SegmentActions()
    started = time.perf_counter()
    engine_done = 0
    for customer in facts:
        run_all(engine_rules, SegmentVariables(customer, now), actions)
        engine_done += 1
        if time.perf_counter() - started > budget_seconds:
            break
    engine_seconds = time.perf_counter() - started
    started = time.perf_counter()
    matched = 0
    for customer in facts:
        for matches in compiled:
            matched += matches(customer, now)
    compiled_seconds = time.perf_counter() - started
    return {
        "segments": len(rules),
        "customers": len(facts),
        "engine_evals_per_s": round(engine_done * len(rules) / engine_seconds),
        "compiled_evals_per_s": round(len(facts) * len(rules) / compiled_seconds),
        "compiled_matches": matched,
    }


async def backfill_seconds(
    dsn: str, shop_id: int, now: datetime, handle: str, options: BackfillOptions | None = None
) -> dict[str, Any]:
    """Time a new segment's backfill over every stored customer of the shop (create path),
    then roll it back so the store stays as it was."""
    conn = await asyncpg.connect(dsn)
    try:
        customers = await conn.fetchval(
            "SELECT count(*) FROM customers WHERE shop_id = $1", shop_id
        )
        transaction = conn.transaction()
        await transaction.start()
        try:
            started = time.perf_counter()
            created = await create_segment(
                conn, shop_id, SegmentSpec(handle, "Bench", "", BACKFILL_RULE, []), now, options
            )
            seconds = time.perf_counter() - started
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    if created is None:
        raise RuntimeError(f"segment handle {handle} already taken")
    return {"customers": customers, "entered": created[1].entered, "seconds": round(seconds, 3)}
