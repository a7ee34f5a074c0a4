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
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
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


SEED_CHUNK = 100_000


async def seed(
    dsn: str, domain: str, seed: int, numbers: range, now: datetime, first: bool
) -> Seeded:
    """Import these customers' orders through the import pipeline (GraphQL bulk files of
    SEED_CHUNK customers each, so neither memory nor /tmp holds a million at once)."""
    orders = 0
    seconds = 0.0
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        for start in range(numbers.start, numbers.stop, SEED_CHUNK):
            chunk = range(start, min(start + SEED_CHUNK, numbers.stop))
            with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
                path = Path(tmp) / "orders.jsonl"
                with path.open("w") as out:
                    people = list(store.customers(seed, chunk, now))
                    orders += sum(len(person.orders) for person in people)
                    with_products = first and start == numbers.start
                    for line in store.bulk_lines(people, with_products=with_products):
                        out.write(line + "\n")
                started = time.perf_counter()
                report = await import_files(pool, domain, [path], now=now, exported_at=now)
                seconds += time.perf_counter() - started
            if report.rejected_count:
                raise RuntimeError(f"seeding rejected {report.rejected_count} rows")
    finally:
        await pool.close()
    return Seeded(len(numbers), orders, seconds)


def new_order_events(
    seed: int, stored: int, count: int, now: datetime, taken: dict[int, int]
) -> list[Event]:
    """`count` new orders, each for a random stored customer; `taken` counts per customer."""
    rng = random.Random(seed + stored)
    events = []
    for _ in range(count):
        number = rng.randrange(stored)
        index = NEW_ORDER_INDEX + taken.get(number, 0)
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


async def backfill_seconds(dsn: str, shop_id: int, now: datetime, handle: str) -> dict[str, Any]:
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
                conn, shop_id, SegmentSpec(handle, "Bench", "", BACKFILL_RULE, []), now
            )
            seconds = time.perf_counter() - started
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    if created is None:
        raise RuntimeError(f"segment handle {handle} already taken")
    return {"customers": customers, "entered": created[1].entered, "seconds": round(seconds, 3)}
