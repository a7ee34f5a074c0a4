"""The segmenter's consumer loop: segflow.events → one transaction per batch → outbox → offsets."""

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.common.settings import Settings
from services.common.shopify import Product
from services.segmenter import store
from services.segmenter.decode import Undecodable, decode_event
from services.segmenter.metrics import SegmenterMetrics
from services.segmenter.outbox import publish_pending
from services.segmenter.pipeline import (
    BatchOutcome,
    ShopEvent,
    StaleOwnershipError,
    apply_events,
)
from services.segmenter.reducer import changes_customer
from services.segmenter.rulebook import RuleBook

logger = logging.getLogger(__name__)

# Transient conflicts between replicas: the whole batch is retried in a new transaction.
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, StaleOwnershipError)
# The database or network failing says nothing about the events: stop, and replay them later.
INFRASTRUCTURE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions move only after the batch in hand is committed (its offsets included)."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass


class SegmenterWorker:
    """Consumes events in bounded batches; offsets are committed only after the database commit."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        metrics: SegmenterMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer = consumer
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._rules = RuleBook()
        self._batch_lock = asyncio.Lock()
        self._shop_ids: dict[str, int] = {}
        self.listener = _FinishBatchOnRevoke(self._batch_lock)
        point, _, count = (settings.crash_at or "").partition(":")
        self._crash_point = point or None
        self._crash_after = int(count or 1)

    def _crash_if_told(self, point: str) -> None:
        """The crash test hook: die as kill -9 would, with no cleanup, at the chosen point."""
        if point != self._crash_point:
            return
        self._crash_after -= 1
        if self._crash_after <= 0:
            logger.warning("crashing at %s as SEGFLOW_CRASH_AT asks", point)
            os.kill(os.getpid(), signal.SIGKILL)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished first."""
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=200, max_records=self._settings.segmenter_batch_size
            )
            records = [record for partition in batch.values() for record in partition]
            if not records:
                continue
            async with self._batch_lock:
                await self.process(batch)

    async def process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decode, dead-letter, apply in one transaction, publish the outbox, commit offsets."""
        started = time.perf_counter()
        records = [record for partition in batch.values() for record in partition]
        decoded, dead = await self._decode(records)
        for record, reason in dead:
            await self._dead_letter(record, reason)
        outcome = await self._apply(decoded)
        self._crash_if_told("after_db_commit")
        for item in outcome.applied:
            useful = changes_customer(item.event) or isinstance(item.event.payload, Product)
            self._metrics.events.labels(item.event.topic, "applied" if useful else "ignored").inc()
        for item in outcome.duplicates:
            self._metrics.events.labels(item.event.topic, "duplicate").inc()
        await publish_pending(
            self._pool,
            self._producer,
            self._settings.topic_segment_changes,
            self._metrics,
            before_marking=lambda: self._crash_if_told("before_marking_published"),
            # Bounded, so a rebalance never waits for a large backfill's changes to drain; the
            # scheduler publishes whatever is left.
            max_rows=4 * self._settings.segmenter_batch_size,
        )
        self._crash_if_told("after_publish")
        await self._consumer.commit(
            {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        )
        self._crash_if_told("after_offset_commit")
        self._metrics.batch_size.observe(len(records))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._observe_lag(batch)

    async def _apply_once(self, events: list[ShopEvent]) -> BatchOutcome:
        """One transaction, retried when it conflicts with another replica's."""
        for attempt in range(5):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await apply_events(conn, events, self._rules, self._clock())
            except RETRYABLE:
                if attempt == 4:
                    raise
                logger.warning("batch conflicted with another transaction; retrying")
        raise AssertionError("unreachable")

    async def _apply(self, decoded: list[tuple[ConsumerRecord, ShopEvent]]) -> BatchOutcome:
        """Apply the batch; if it fails for a reason other than the infrastructure, apply the
        events one by one and dead-letter those that fail, so one poison event cannot stop
        the partition."""
        try:
            return await self._apply_once([event for _, event in decoded])
        except INFRASTRUCTURE:
            raise
        except Exception:
            logger.exception("batch failed; applying its events one by one")
        total = BatchOutcome()
        for record, event in decoded:
            try:
                outcome = await self._apply_once([event])
            except INFRASTRUCTURE:
                raise
            except Exception as exc:
                logger.exception("event failed; dead-lettering it")
                await self._dead_letter(record, Undecodable("processing_error", repr(exc)))
                continue
            total.applied += outcome.applied
            total.duplicates += outcome.duplicates
            total.changes += outcome.changes
        return total

    async def _decode(
        self, records: list[ConsumerRecord]
    ) -> tuple[list[tuple[ConsumerRecord, ShopEvent]], list[tuple[ConsumerRecord, Undecodable]]]:
        decoded = []
        dead: list[tuple[ConsumerRecord, Undecodable]] = []
        for record in records:
            result = decode_event(record.value)
            if isinstance(result, Undecodable):
                dead.append((record, result))
            else:
                decoded.append((record, result))
        missing = {envelope.shop for _, (envelope, _) in decoded} - set(self._shop_ids)
        if missing:
            async with self._pool.acquire() as conn:
                self._shop_ids.update(await store.shop_ids(conn, missing))
        events = []
        for record, (envelope, event) in decoded:
            shop_id = self._shop_ids.get(envelope.shop)
            if shop_id is None:
                dead.append((record, Undecodable("unknown_shop", envelope.shop)))
            else:
                events.append((record, ShopEvent(shop_id, event)))
        return events, dead

    async def _dead_letter(self, record: ConsumerRecord, why: Undecodable) -> None:
        """Send the original bytes with the reason; wait for the ack so nothing is lost."""
        headers = [
            ("reason", why.reason.encode()),
            ("detail", why.detail.encode()[:1000]),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        await self._producer.send_and_wait(
            self._settings.topic_dead_letter, record.value or b"", key=record.key, headers=headers
        )
        self._metrics.dead_letters.labels(why.reason).inc()
        self._metrics.events.labels("unknown", "dead_letter").inc()
        logger.warning(
            "dead-lettered a record",
            extra={"reason": why.reason, "detail": why.detail, "offset": record.offset},
        )

    def _observe_lag(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and records:
                lag = max(0, highwater - (records[-1].offset + 1))
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
