"""The benchmark of issue 12: the real stack end to end, then the in-database measures.

Phase 1 runs `segflow dev` as a child (its own ports and data dir) and drives it over HTTP:
throughput (wrk replaying the synthetic store's signed webhooks, until every change written
for them has been read back from segflow.segment-changes), latency at a fixed rate, the
segments lookup, and every process's memory. Phase 2 stops it and, against a PostgreSQL of
its own, seeds stored history through the importer for the cost curve, the baselines and
the backfill.
"""

import asyncio
import logging
import random
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import load, offline, report, store
from bench.segmenter import measure_backfill
from bench.stack import Ports, Stack, memory_by_label, processes_under, running_stack
from services.common.db import migrate
from services.common.shops import create_shop
from services.dev.embedded import EmbeddedPostgres
from services.segmenter.storage.segments import install_templates

logger = logging.getLogger("bench")

LATENCY_BASE = 5_000_000  # customer numbers of the latency phase: never in the store
LOW_RATE = 50.0
CURVE_DOMAIN = "bench-curve.myshopify.com"
BACKFILL_DOMAIN = "bench-backfill.myshopify.com"


@dataclass(frozen=True)
class Config:
    quick: bool
    seed: int
    workdir: Path
    ports: Ports
    e2e_customers: int
    connections: int
    latency_rate: float
    latency_seconds: float
    lookup_seconds: int
    curve_sizes: tuple[int, ...]
    curve_events: int
    naive_seconds: float
    # QUICK stores too few customers for backfill_100k_s: it backfills rows made in SQL.
    generated_backfill_rows: int
    command: str

    @classmethod
    def preset(cls, quick: bool, workdir: Path, ports: Ports, command: str) -> "Config":
        return cls(
            quick=quick,
            seed=12,
            workdir=workdir,
            ports=ports,
            e2e_customers=2_000 if quick else 20_000,
            connections=32,
            latency_rate=500.0,
            latency_seconds=10.0 if quick else 30.0,
            lookup_seconds=8 if quick else 20,
            curve_sizes=(1_000, 5_000, 20_000) if quick else (10_000, 100_000, 1_000_000),
            curve_events=1_500 if quick else 10_000,
            naive_seconds=5.0 if quick else 15.0,
            generated_backfill_rows=100_000,
            command=command,
        )


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class MemoryWatch:
    """Samples the stack's memory every second; keeps each label's peak."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.peak: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for label, mb in self.stack.memory_mb().items():
            self.peak[label] = max(mb, self.peak.get(label, 0.0))

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(1.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.sample()


async def _shop_id(dsn: str, domain: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        shop_id: int = await conn.fetchval("SELECT id FROM shops WHERE domain = $1", domain)
        return shop_id
    finally:
        await conn.close()


async def _wait_settled(
    dsn: str,
    shop_id: int,
    since: datetime,
    events: int,
    reader: load.ChangeReader,
    timeout: float,
) -> float:
    """Poll until `events` events of the shop are processed since `since` and every change
    written since then has been read back; the perf_counter time it settled at."""
    conn = await asyncpg.connect(dsn)
    try:
        processed_at = None
        last_report = 0.0
        async with asyncio.timeout(timeout):
            while True:
                if processed_at is None:
                    processed = await conn.fetchval(
                        "SELECT count(*) FROM processed_events"
                        " WHERE shop_id = $1 AND processed_at >= $2",
                        shop_id,
                        since,
                    )
                    if processed >= events:
                        processed_at = time.perf_counter()
                    elif time.perf_counter() - last_report > 5:
                        last_report = time.perf_counter()
                        logger.info("processed %d of %d events", processed, events)
                if processed_at is not None:
                    written = await conn.fetchval(
                        "SELECT count(*) FROM segment_changes"
                        " WHERE shop_id = $1 AND changed_at >= $2",
                        shop_id,
                        since,
                    )
                    if reader.count >= written:
                        return max(processed_at, reader.last_seen)
                    if time.perf_counter() - last_report > 5:
                        last_report = time.perf_counter()
                        logger.info("read %d of %d changes", reader.count, written)
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def send_products(stack: Stack, config: Config, now: datetime) -> None:
    """The catalogue first (product types), settled before anything is timed."""
    products = store.product_deliveries(config.seed, now)
    host = f"127.0.0.1:{config.ports.ingest}"
    requests = [
        (d.event_id, load.signed_request(d, host, stack.shop_domain, stack.webhook_secret))
        for d in products
    ]
    result = await load.paced("127.0.0.1", config.ports.ingest, requests, 200.0, 4)
    if result.ok != len(requests):
        raise RuntimeError(f"products: {result.ok} of {len(requests)} accepted")


async def measure_e2e(stack: Stack, config: Config, now: datetime) -> dict[str, Any]:
    """wrk replays the store's webhooks once; done when every change is read back."""
    people = list(store.customers(config.seed, range(config.e2e_customers), now))
    deliveries = store.deliveries(config.seed, people)
    host = f"127.0.0.1:{config.ports.ingest}"
    request_file = config.workdir / "e2e-requests.bin"
    load.write_requests(
        request_file,
        [load.signed_request(d, host, stack.shop_domain, stack.webhook_secret) for d in deliveries],
    )
    distinct = len({(d.topic, d.event_id) for d in deliveries})
    logger.info("e2e: replaying %d deliveries (%d distinct events)", len(deliveries), distinct)
    shop_id = await _shop_id(stack.database_url, stack.shop_domain)
    reader = load.ChangeReader(
        stack.bootstrap_servers, "segflow.segment-changes", stack.shop_domain
    )
    await reader.start()
    try:
        since = datetime.now(UTC)
        started = time.perf_counter()
        run = await load.replay(
            stack.ingest_url, request_file, config.workdir, config.connections, timeout=900
        )
        settled = await _wait_settled(
            stack.database_url, shop_id, since, distinct, reader, timeout=900
        )
    finally:
        await reader.stop()
    accepted = int(run.output["accepted"])
    e2e_seconds = settled - started
    return {
        "customers": config.e2e_customers,
        "deliveries": len(deliveries),
        "distinct_events": distinct,
        "duplicates": sum(d.duplicate for d in deliveries),
        "out_of_order": sum(d.out_of_order for d in deliveries),
        "accepted": accepted,
        "failed": int(run.output["failed"]),
        "changes_read": reader.count,
        "ingest_seconds": round(run.seconds, 2),
        "e2e_seconds": round(e2e_seconds, 2),
        "ingest_req_per_s": round(accepted / run.seconds, 1),
        "e2e_events_per_s": round(accepted / e2e_seconds, 1),
        "client_cpu_percent": run.client_cpu_percent,
        "lookup_ids": [p.id for p in people],
    }


async def measure_latency(
    stack: Stack, config: Config, now: datetime, rate: float, seconds: float, numbers_from: int
) -> dict[str, Any]:
    """Fresh customers' first orders at a fixed rate; receipt -> change published."""
    rng = random.Random(config.seed + numbers_from)
    count = int(rate * seconds)
    host = f"127.0.0.1:{config.ports.ingest}"
    requests = []
    for i in range(count):
        delivery = store.new_order_delivery(rng, numbers_from + i, 0, now)
        raw = load.signed_request(delivery, host, stack.shop_domain, stack.webhook_secret)
        requests.append((delivery.event_id, raw))
    reader = load.ChangeReader(
        stack.bootstrap_servers, "segflow.segment-changes", stack.shop_domain
    )
    await reader.start()
    try:
        cpu_before = sum(psutil.Process().cpu_times()[:2])
        result = await load.paced("127.0.0.1", config.ports.ingest, requests, rate, 16)
        client_cpu = sum(psutil.Process().cpu_times()[:2]) - cpu_before
        wanted = set(result.send_times)
        try:
            async with asyncio.timeout(60):
                while not wanted <= reader.first.keys():
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pass
    finally:
        await reader.stop()
    published, seen = [], []
    for event_id in wanted:
        first = reader.first.get(event_id)
        if first is None:
            continue
        if first.received_at is not None:
            published.append(first.published_ms - first.received_at.timestamp() * 1000)
        seen.append((first.seen_at - result.send_times[event_id]) * 1000)
    return {
        "rate": rate,
        "sent": result.sent,
        "accepted": result.ok,
        "with_change": len(seen),
        "send_late_max_ms": round(result.late_ms_max, 1),
        # Not None: the stack could not take the rate, so sending stopped this late.
        "gave_up_late_s": _round(result.gave_up_late_s, 2),
        "achieved_rate": round(result.sent / result.seconds, 1) if result.seconds else None,
        "client_cpu_percent": round(100 * client_cpu / result.seconds, 1),
        "latency_p50_ms": _round(percentile(published, 0.5)),
        "latency_p99_ms": _round(percentile(published, 0.99)),
        "send_to_seen_p50_ms": _round(percentile(seen, 0.5)),
        "send_to_seen_p99_ms": _round(percentile(seen, 0.99)),
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def measure_lookup(stack: Stack, config: Config, ids: list[int]) -> dict[str, Any]:
    rng = random.Random(config.seed + 2)
    sample = rng.sample(ids, min(len(ids), 2000))
    run = await load.lookups(
        stack.api_url, sample, stack.api_token, config.workdir, config.lookup_seconds, 8
    )
    out = run.output
    return {
        "requests": out["requests"],
        "non2xx": out["non2xx"],
        "errors": out["errors"],
        "lookup_req_per_s": round(out["requests"] / (out["duration_us"] / 1e6), 1),
        "lookup_p50_ms": round(out["p50_us"] / 1000, 2),
        "lookup_p99_ms": round(out["p99_us"] / 1000, 2),
        "client_cpu_percent": run.client_cpu_percent,
    }


async def stack_phase(
    config: Config, now: datetime, database_url: str, postgres_dir: Path
) -> dict[str, Any]:
    stack_dir = config.workdir / "stack"
    async with running_stack(stack_dir, config.ports, database_url, (postgres_dir,)) as stack:
        watch = MemoryWatch(stack)
        watch.sample()
        idle = dict(watch.peak)
        watch.start()
        try:
            logger.info("stack ready: %s", stack.memory_mb())
            await send_products(stack, config, now)
            e2e = await measure_e2e(stack, config, now)
            logger.info("e2e: %s", {k: v for k, v in e2e.items() if k != "lookup_ids"})
            # The low rate first: what the loop itself costs, with no queue behind it.
            low = await measure_latency(
                stack, config, now, LOW_RATE, config.latency_seconds / 2, LATENCY_BASE
            )
            logger.info("latency at %s/s: %s", LOW_RATE, low)
            latency = await measure_latency(
                stack, config, now, config.latency_rate, config.latency_seconds, LATENCY_BASE * 2
            )
            logger.info("latency: %s", latency)
            lookup = await measure_lookup(stack, config, e2e.pop("lookup_ids"))
            logger.info("lookup: %s", lookup)
        finally:
            await watch.stop()
        return {
            "e2e": e2e,
            "latency": latency,
            "latency_low_rate": low,
            "lookup": lookup,
            "rss_mb_idle": idle,
            "rss_mb": dict(watch.peak),
        }


async def _database_mb(dsn: str) -> float:
    """The database's size on disk (tables, indexes, TOAST), in MB."""
    conn = await asyncpg.connect(dsn)
    try:
        size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return round(size / 1e6, 1)


def _postgres_memory(data_dir: Path) -> float | None:
    return memory_by_label(processes_under(data_dir)).get("postgres")


async def offline_phase(config: Config, now: datetime, dsn: str, data_dir: Path) -> dict[str, Any]:
    """The in-database measures, leaving the largest store in place for the stack phase."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        shop = await create_shop(conn, CURVE_DOMAIN)
        await install_templates(conn, shop.shop_id, now)
        other = await create_shop(conn, BACKFILL_DOMAIN)
    finally:
        await conn.close()
    curve: list[dict[str, Any]] = []
    backfills: dict[int, dict[str, Any]] = {}
    taken: dict[int, int] = {}
    stored = orders = 0
    out: dict[str, Any] = {}
    for size in config.curve_sizes:
        seeded = await offline.seed(
            dsn, shop.shop_id, range(stored, size), now, with_products=stored == 0
        )
        stored = size
        orders += seeded.orders
        logger.info("seeded %d customers in %.1f s", size, seeded.seconds)
        events = offline.new_order_events(config.seed, stored, config.curve_events, now, taken)
        if size == config.curve_sizes[-1]:
            naive, naive_events = await offline.naive_rate(
                dsn, shop.shop_id, events, now, config.naive_seconds
            )
            out["naive"] = {"events": naive_events, "events_per_s": round(naive, 1)}
        rate = await offline.segmenter_rate(dsn, shop.shop_id, events, now, batch=500)
        orders += len(events)
        logger.info("%d stored customers: %.0f events/s", size, rate)
        curve.append(
            {
                "customers": size,
                "orders": orders,
                "seed_seconds": round(seeded.seconds, 1),
                "events_per_s": round(rate, 1),
            }
        )
        if size in (100_000, 1_000_000):
            backfills[size] = await offline.backfill_seconds(
                dsn, shop.shop_id, now, f"bench-backfill-{size}"
            )
    out["rules"] = await offline.rules_rates(dsn, shop.shop_id, now, 2000, 10.0)
    out["postgres_mb_at_largest"] = _postgres_memory(data_dir)
    # Before the generated backfill rows below: the store's customers and their orders only.
    out["database_mb_at_largest"] = await _database_mb(dsn)
    if 100_000 not in backfills:
        # Too few stored customers in QUICK: 100k rows generated in SQL instead.
        generated = await measure_backfill(dsn, other.shop_id, config.generated_backfill_rows)
        backfills[100_000] = {**generated, "generated_rows": True}
    out["curve"] = curve
    out["backfill"] = backfills
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


async def run(config: Config) -> dict[str, Any]:
    """Every phase; the results as latest.json holds them."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    load_before = report.load_average()
    started = time.perf_counter()
    # One PostgreSQL for both phases: the stack runs on the store the cost curve filled, so
    # its processes' memory is measured with the largest store (1M customers in the full run).
    data_dir = config.workdir / "pg"
    postgres = EmbeddedPostgres(data_dir)
    dsn = await asyncio.to_thread(postgres.start)
    try:
        local = await offline_phase(config, now, dsn, data_dir)
        online = await stack_phase(config, now, dsn, data_dir)
    finally:
        await asyncio.to_thread(postgres.stop)
    curve = local["curve"]
    rules = local["rules"]
    backfill = local["backfill"]
    notes = []
    if config.quick:
        notes.append(
            f"QUICK: cost curve at {', '.join(f'{p:,}' for p in config.curve_sizes)} stored"
            " customers (the full run: 10k, 100k, 1M); backfill_100k_s over 100k customer rows"
            " generated in SQL (bench/segmenter.py), since QUICK stores only"
            f" {config.curve_sizes[-1]:,}; backfill_1m_s is full-run only."
        )
    notes.append(
        "naive_events_per_s times only the evaluation (every segment's compiled SQL run for"
        " the event's customer, no writes) at the largest stored size: an upper bound; compare"
        f" with the segmenter's {curve[-1]['events_per_s']:,.0f} events/s there, writes included."
    )
    notes.append(
        "Latency: own paced client (bench/latency.py was not on main); receipt = the change's"
        " received_at (ingest), published = the change record's Kafka timestamp."
    )
    e2e, latency, lookup = online["e2e"], online["latency"], online["lookup"]
    notes.append(
        f"End to end: {e2e['deliveries']:,} deliveries of {e2e['customers']:,} customers"
        f" ({e2e['duplicates']} duplicates, {e2e['out_of_order']} out of order) replayed by"
        f" wrk over {config.connections} connections; {e2e['changes_read']:,} changes read"
        " back. Client CPU (share of one core): wrk replay"
        f" {e2e['client_cpu_percent']}%, paced client {latency['client_cpu_percent']}%, wrk"
        f" lookup {lookup['client_cpu_percent']}%."
    )
    if online["latency"]["gave_up_late_s"] is not None:
        notes.append(
            f"Latency: the stack could not take {config.latency_rate:.0f} events/s (it fell"
            f" {online['latency']['gave_up_late_s']} s behind, so sending stopped after"
            f" {online['latency']['sent']:,}); the percentiles include that queueing."
        )
    rss = dict(online["rss_mb"])
    if local.get("postgres_mb_at_largest") is not None:
        rss[f"postgres (offline, {config.curve_sizes[-1]:,} customers)"] = local[
            "postgres_mb_at_largest"
        ]
    stored = curve[-1]
    notes.append(
        f"Database on disk with {stored['customers']:,} customers and {stored['orders']:,}"
        f" orders stored: {local['database_mb_at_largest']:,.1f} MB"
        f" ({local['database_mb_at_largest'] * 1e3 / stored['customers']:,.1f} kB per customer,"
        " its orders, state and memberships included)."
    )
    smallest, largest = curve[0]["events_per_s"], curve[-1]["events_per_s"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": config.command,
        "quick": config.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": report.machine(),
        "load_before": load_before,
        "load_after": report.load_average(),
        "e2e_events_per_s": e2e["e2e_events_per_s"],
        "ingest_req_per_s": e2e["ingest_req_per_s"],
        "latency_p50_ms": latency["latency_p50_ms"],
        "latency_p99_ms": latency["latency_p99_ms"],
        "latency_50_per_s_p50_ms": online["latency_low_rate"]["latency_p50_ms"],
        "latency_50_per_s_p99_ms": online["latency_low_rate"]["latency_p99_ms"],
        "lookup_p50_ms": lookup["lookup_p50_ms"],
        "lookup_p99_ms": lookup["lookup_p99_ms"],
        "backfill_100k_s": backfill[100_000]["seconds"],
        "backfill_1m_s": backfill[1_000_000]["seconds"] if 1_000_000 in backfill else None,
        "backfill_1m_s_reason": None if 1_000_000 in backfill else "QUICK run: 1M is full-run only",
        "rss_mb": rss,
        "database_mb": local["database_mb_at_largest"],
        "naive_events_per_s": local["naive"]["events_per_s"],
        "engine_evals_per_s": rules["engine_evals_per_s"],
        "compiled_evals_per_s": rules["compiled_evals_per_s"],
        "compiled_vs_engine": round(rules["compiled_evals_per_s"] / rules["engine_evals_per_s"], 1),
        "segmenter_vs_naive": round(largest / local["naive"]["events_per_s"], 2),
        "cost_curve": curve,
        "cost_curve_ratio": round(largest / smallest, 2) if smallest else None,
        "e2e": e2e,
        "latency": latency,
        "latency_low_rate": online["latency_low_rate"],
        "lookup": lookup,
        "rules": rules,
        "backfill": {str(k): v for k, v in backfill.items()},
        "rss_mb_idle": online["rss_mb_idle"],
        "notes": notes,
    }
