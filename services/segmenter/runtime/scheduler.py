"""Time-based membership: re-evaluates customers whose next_eval_at has come (SKIP LOCKED)."""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from services.common.settings import Settings
from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.outbox import observe_backlog, publish_pending, purge_published
from services.segmenter.runtime.pipeline import evaluate_customers
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.runtime.segment_sizes import observe_segment_sizes
from services.segmenter.storage import queries
from services.segmenter.storage.backfill import BackfillOptions, resume_abandoned

logger = logging.getLogger(__name__)

DUE_BACKLOG = "SELECT count(*) FROM customers WHERE next_eval_at <= $1"
# Rows each purge statement deletes at most, per scheduler round.
PURGE_BATCH = 5000


async def evaluate_due(
    pool: asyncpg.Pool, rules: RuleBook, now: datetime, limit: int = 500, cause: str = "schedule"
) -> int:
    """Re-evaluate up to `limit` due customers in one transaction; return how many."""
    async with pool.acquire() as conn, conn.transaction():
        keys = await queries.due_customers(conn, now, limit)
        if not keys:
            return 0
        # Due customers exist: one erased since it was picked is not made again.
        states = await queries.lock_states(conn, keys, create=False)
        await evaluate_customers(conn, states, rules, now, cause)
    return len(keys)


async def evaluate_buyers(
    pool: asyncpg.Pool,
    rules: RuleBook,
    shop_id: int,
    product_ids: Sequence[int],
    now: datetime,
    cause: str,
    limit: int = 500,
) -> int:
    """Re-evaluate every buyer of the products now, `limit` customers per transaction, with
    the given cause (an import evaluates its products' buyers itself, as bulk changes);
    return how many segment changes that made."""
    if not product_ids:
        return 0
    changes, after = 0, -1
    while True:
        async with pool.acquire() as conn, conn.transaction():
            await queries.lock_shops_shared(conn, [shop_id])
            buyers = await queries.buyers_after(conn, shop_id, product_ids, after, limit)
            if not buyers:
                return changes
            keys = [(shop_id, buyer) for buyer in buyers]
            # Buyers exist: one erased since the orders were read is not made again.
            states = await queries.lock_states(conn, keys, create=False)
            # Their products changed type or vendor: their aggregates are built anew.
            changes += len(await evaluate_customers(conn, states, rules, now, cause, rebuild=True))
        after = buyers[-1]


async def fan_out_products(pool: asyncpg.Pool, now: datetime, limit: int = 100) -> int:
    """Make the buyers of queued changed products due now; return how many products.

    One transaction per shop, locking in the order every writer uses: the shop (shared),
    the queued products, then the buyers in key order.
    """
    async with pool.acquire() as conn:
        shops = await queries.fanout_shops(conn)
    done = 0
    for shop_id in shops:
        async with pool.acquire() as conn, conn.transaction():
            await queries.lock_shops_shared(conn, [shop_id])
            product_ids = await queries.take_fanout(conn, shop_id, limit)
            if product_ids:
                await queries.schedule_buyers(conn, shop_id, sorted(product_ids), now)
        done += len(product_ids)
    return done


class Scheduler:
    """Runs due evaluations in batches; safe to run in several replicas at once."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        metrics: SegmenterMetrics,
        clock: Callable[[], datetime],
        batch: int = 500,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._batch = batch
        self._rules = RuleBook()
        self._sizes_due = 0.0
        self._backfill = BackfillOptions(
            chunk=settings.backfill_chunk_size,
            lease_seconds=settings.backfill_lease_seconds,
            clock=clock,
        )

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Evaluate every customer due now, publish the changes; return how many were due.

        With `stop` set, it returns between batches (the rest is due again next start).
        First it finishes segment backfills whose runner died (their lease ran out)."""
        await resume_abandoned(self._pool, self._clock, self._backfill, stop)
        while await fan_out_products(self._pool, self._clock()) > 0:
            if stop is not None and stop.is_set():
                break
        total = 0
        while not (stop is not None and stop.is_set()):
            done = await evaluate_due(self._pool, self._rules, self._clock(), self._batch)
            total += done
            if done:
                await publish_pending(
                    self._pool,
                    self._producer,
                    self._settings.topic_segment_changes,
                    self._metrics,
                    send_timeout=self._settings.outbox_send_timeout_seconds,
                    stop=stop,
                )
            if done < self._batch:
                break
        self._metrics.scheduled_evaluations.inc(total)
        return total

    async def purge_processed_events(
        self, limit: int = PURGE_BATCH, now: datetime | None = None
    ) -> int:
        """Forget event ids older than the dedupe retention (well past Shopify's retries),
        and engagement event ids older than theirs; at most `limit` of each per call.

        Retention is wall time (`now`, by default the current time), like the rows' own
        `processed_at`, not the evaluation clock.
        """
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self._settings.dedupe_retention_days)
        engagement = now - timedelta(days=self._settings.engagement_dedupe_retention_days)
        async with self._pool.acquire() as conn:
            deleted = await queries.purge(conn, queries.PURGE_PROCESSED, cutoff, limit)
            return deleted + await queries.purge(
                conn, queries.PURGE_ENGAGEMENT_PROCESSED, engagement, limit
            )

    async def purge_published_changes(
        self, limit: int = PURGE_BATCH, now: datetime | None = None
    ) -> int:
        """Delete up to `limit` outbox rows published longer ago than the outbox retention
        (wall time, like `published_at`)."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self._settings.outbox_retention_days)
        return await purge_published(self._pool, cutoff, limit)

    async def observe(self, stop: asyncio.Event) -> None:
        """Report the outbox and due backlogs every `scheduler_interval_seconds` until `stop`.

        On its own beside `run`: a round can take minutes (a backfill) or fail in its publish
        (the broker gone), and the gauges must move meanwhile, SegflowOutboxBacklog reads them.
        With the database failing they keep their last values; the round's retries say why.
        """
        while not stop.is_set():
            try:
                async with self._pool.acquire() as conn:
                    backlog = await conn.fetchval(DUE_BACKLOG, self._clock())
                self._metrics.due_backlog.set(backlog)
                await observe_backlog(self._pool, self._metrics)
            except Exception as exc:
                if infrastructure_fault(exc, "database") is None:
                    raise
                logger.debug("backlog not observed: the database is failing")
            try:
                await asyncio.wait_for(stop.wait(), self._settings.scheduler_interval_seconds)
            except TimeoutError:
                pass

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set, waiting `scheduler_interval_seconds` between rounds."""
        while not stop.is_set():
            await self.run_once(stop)
            # Changes written outside a batch (segment edits in the API) are published here.
            # Bounded as the worker's outbox is: the wait holds the publisher lock.
            await publish_pending(
                self._pool,
                self._producer,
                self._settings.topic_segment_changes,
                self._metrics,
                send_timeout=self._settings.outbox_send_timeout_seconds,
                stop=stop,
            )
            if time.monotonic() >= self._sizes_due:
                await observe_segment_sizes(self._pool, self._metrics)
                self._sizes_due = time.monotonic() + self._settings.segment_sizes_interval_seconds
            # A bounded slice every round: a backlog (an upgrade, a long stop) drains over
            # rounds instead of stalling one.
            await self.purge_processed_events()
            await self.purge_published_changes()
            try:
                await asyncio.wait_for(stop.wait(), self._settings.scheduler_interval_seconds)
            except TimeoutError:
                pass
