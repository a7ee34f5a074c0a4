"""Time-based membership: re-evaluates customers whose next_eval_at has come (SKIP LOCKED)."""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from services.common.settings import Settings
from services.segmenter import store
from services.segmenter.metrics import SegmenterMetrics
from services.segmenter.outbox import publish_pending
from services.segmenter.pipeline import evaluate_customers
from services.segmenter.rulebook import RuleBook

logger = logging.getLogger(__name__)

DUE_BACKLOG = "SELECT count(*) FROM customers WHERE next_eval_at <= $1"


async def evaluate_due(pool: asyncpg.Pool, rules: RuleBook, now: datetime, limit: int = 500) -> int:
    """Re-evaluate up to `limit` due customers in one transaction; return how many."""
    async with pool.acquire() as conn, conn.transaction():
        keys = await store.due_customers(conn, now, limit)
        if not keys:
            return 0
        states = await store.lock_states(conn, keys)
        await evaluate_customers(conn, states, rules, now, "schedule")
    return len(keys)


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

    async def run_once(self) -> int:
        """Evaluate every customer due now, publish the changes; return how many were due."""
        total = 0
        while True:
            done = await evaluate_due(self._pool, self._rules, self._clock(), self._batch)
            total += done
            if done:
                await publish_pending(
                    self._pool,
                    self._producer,
                    self._settings.topic_segment_changes,
                    self._metrics,
                )
            if done < self._batch:
                break
        self._metrics.scheduled_evaluations.inc(total)
        return total

    async def purge_processed_events(self) -> None:
        """Forget event ids older than the dedupe retention (well past Shopify's retries)."""
        cutoff = self._clock() - timedelta(days=self._settings.dedupe_retention_days)
        async with self._pool.acquire() as conn:
            await conn.execute(store.PURGE_PROCESSED, cutoff)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set, waiting `scheduler_interval_seconds` between rounds."""
        rounds = 0
        while not stop.is_set():
            await self.run_once()
            # Changes written outside a batch (segment edits in the API) are published here.
            await publish_pending(
                self._pool, self._producer, self._settings.topic_segment_changes, self._metrics
            )
            async with self._pool.acquire() as conn:
                backlog = await conn.fetchval(DUE_BACKLOG, self._clock())
            self._metrics.due_backlog.set(backlog)
            if rounds % 3600 == 0:
                await self.purge_processed_events()
            rounds += 1
            try:
                await asyncio.wait_for(stop.wait(), self._settings.scheduler_interval_seconds)
            except TimeoutError:
                pass
